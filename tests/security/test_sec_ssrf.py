"""SSRF through mirrors: the server must not become a way into the network it stands in.

A mirror fetches URLs and serves what it got to everyone who can read the index. The
attacker here has an account (anyone can create one) or controls an upstream, and tries
to make the server read an internal service: by creating a mirror of it, by pointing a
mirror at a loopback, private or link-local address (spelled as an IP or as a name that
resolves there), by an upstream page that links files on another host, by an upstream
redirect, by a mirror of the server itself, and by a ``file:`` mirror tree holding a
symbolic link out of it. The policy (doc/mirror.md, "Security policy") is checked by
servers started *without* the loopback allowance the other tests use.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

SECRET = b"INTERNAL SERVICE SECRET 7f3a"
SECRET_SHA = hashlib.sha256(SECRET).hexdigest()
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


class _Site:
    """A tiny HTTP server on 127.0.0.1 answering fixed routes and recording what it was asked."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.asked: list[str] = []
        self.vias: list[str | None] = []  # the X-Devpi-Via header of each request
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.asked.append(self.path)
                site.vias.append(self.headers.get("X-Devpi-Via"))
                status, headers, body = site.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def internal() -> Iterator[_Site]:
    """The internal service the attacker wants to read (an admin API, a metadata service)."""
    site = _Site()
    site.routes["/simple/"] = (200, {"Content-Type": "text/html"}, b'<a href="secret/">secret</a>')
    site.routes["/simple/secret/"] = (200, {"Content-Type": "text/html"},
                                      b'<a href="/files/secret-1.0.tar.gz">secret-1.0.tar.gz</a>')
    site.routes["/files/secret-1.0.tar.gz"] = (200, {"Content-Type": "application/octet-stream"}, SECRET)
    yield site
    site.close()


@pytest.fixture(scope="module")
def hostile(internal) -> Iterator[_Site]:
    """An upstream the attacker controls: its pages link the internal service's file and
    redirect to it (by address and by a name that resolves to loopback)."""
    site = _Site()
    own = b"an ordinary file"
    site.own_sha = hashlib.sha256(own).hexdigest()
    site.routes["/files/own-1.0.tar.gz"] = (200, {}, own)
    page = (f'<a href="/files/own-1.0.tar.gz#sha256={site.own_sha}">own-1.0.tar.gz</a>\n'
            f'<a href="{internal.url}/files/secret-1.0.tar.gz#sha256={SECRET_SHA}">secret-1.0.tar.gz</a>\n')
    site.routes["/simple/linker/"] = (200, {"Content-Type": "text/html"}, page.encode())
    site.routes["/simple/redir/"] = (302, {"Location": f"{internal.url}/simple/secret/"}, b"")
    site.routes["/simple/redirname/"] = (302, {"Location": f"http://localhost:{internal.port}/simple/secret/"},
                                         b"")
    redir_file = f'<a href="/go/secret-1.0.tar.gz#sha256={SECRET_SHA}">secret-1.0.tar.gz</a>'
    site.routes["/simple/redirfile/"] = (200, {"Content-Type": "text/html"}, redir_file.encode())
    site.routes["/go/secret-1.0.tar.gz"] = (302, {"Location": f"{internal.url}/files/secret-1.0.tar.gz"}, b"")
    yield site
    site.close()


@pytest.fixture(scope="module")
def strict(sec_servers, hostile):
    """The default policy: mirrors reach public addresses only, besides --mirror-url's
    host:port (here the hostile upstream, as if the admin had trusted it); alice may make
    mirrors, bob may not."""
    return sec_servers(mirror_url=f"{hostile.url}/simple/", allow_loopback_upstreams=False,
                       args=("--mirror-creators", "alice"))


@pytest.fixture(scope="module")
def lenient(sec_servers, hostile):
    """An admin who allowed all of loopback: only the other rules stand in the way."""
    return sec_servers(mirror_url=f"{hostile.url}/simple/", allow_loopback_upstreams=False,
                       args=("--mirror-creators", "alice", "--mirror-allow-hosts", "127.0.0.0/8,::1"))


def _named_users(server):
    """root, alice (a mirror creator) and bob (not one)."""
    root = server.login("root", "root")
    for name in ("alice", "bob"):
        if server.api("GET", f"/{name}").status_code == 404:
            server.create_user(name, "pw")
    return root, server.login("alice", "pw"), server.login("bob", "pw")


def _mirror(server, auth, name: str, url: str):
    return server.api("PUT", f"/{auth[0]}/{name}", json={"type": "mirror", "mirror_url": url}, auth=auth)


def test_only_mirror_creators_create_or_repoint_mirrors(strict, internal):
    """bob (any account) tries to create a mirror of the internal service, and to re-point
    a mirror root made for him: both are 403, nothing is asked of the service. Changing
    other keys of his own mirror still works; alice, whom the admin named, may create one."""
    root, alice, bob = _named_users(strict)
    asked_before = len(internal.asked)
    r = _mirror(strict, bob, "peek", f"{internal.url}/simple/")
    assert r.status_code == 403 and "may create a mirror" in r.json()["message"], r.text
    assert strict.api("GET", "/bob/peek").status_code == 404
    r = strict.api("PUT", "/bob/given", json={"type": "mirror", "mirror_url": strict.mirror_url}, auth=root)
    assert r.status_code == 200, r.text
    for body in ({"mirror_url": f"{internal.url}/simple/"}, [f"mirror_url={internal.url}/simple/"]):
        r = strict.api("PATCH", "/bob/given", json=body, auth=bob)
        assert r.status_code == 403 and "may create a mirror" in r.json()["message"], r.text
    assert strict.api("PATCH", "/bob/given", json={"title": "mine"}, auth=bob).status_code == 200
    assert _mirror(strict, alice, "up", strict.mirror_url).status_code == 200
    assert len(internal.asked) == asked_before


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/simple/", "http://10.1.2.3/simple/",
                                    "http://169.254.169.254/latest/", "http://[::1]:{port}/simple/",
                                    "http://0.0.0.0:{port}/simple/", "http://[::ffff:127.0.0.1]:{port}/simple/",
                                    "http://localhost:{port}/simple/"])
def test_root_cannot_point_a_mirror_at_internal_addresses(strict, internal, target):
    """Even root (or a stolen root token) cannot point a mirror at loopback, private,
    link-local or unspecified addresses, however spelled (``localhost`` resolves to
    loopback), neither when creating one nor by re-pointing root/pypi: 400 naming the
    reason. Nothing is asked of the internal service."""
    root = strict.login("root", "root")
    asked_before = len(internal.asked)
    url = target.format(port=internal.port)
    name = f"m{uuid.uuid4().hex[:6]}"
    r = _mirror(strict, root, name, url)
    assert r.status_code == 400, r.text
    assert "may not reach" in r.json()["message"] and "--mirror-allow-hosts" in r.json()["message"]
    assert strict.api("GET", f"/root/{name}").status_code == 404
    r = strict.api("PATCH", "/root/pypi", json={"mirror_url": url}, auth=root)
    assert r.status_code == 400, r.text
    assert strict.api("GET", "/root/pypi").json()["result"]["mirror_url"] == strict.mirror_url
    assert len(internal.asked) == asked_before


def test_the_admin_may_allow_an_internal_upstream(lenient, internal):
    """What the strict server refuses, an admin's --mirror-allow-hosts permits."""
    root = lenient.login("root", "root")
    name = f"m{uuid.uuid4().hex[:6]}"
    assert _mirror(lenient, root, name, f"http://localhost:{internal.port}/simple/").status_code == 200
    r = requests.get(f"{lenient.url}/root/{name}/+simple/secret/", headers=JSON, timeout=30)
    assert r.status_code == 200 and [f["filename"] for f in r.json()["files"]] == ["secret-1.0.tar.gz"]


def test_upstream_redirects_to_internal_services_are_not_followed(strict, internal):
    """The upstream (trusted by the admin) redirects a page, and a file, to the internal
    service, by address and by a name resolving to loopback: the connection is refused
    where it is made, so the page is a 502 naming the policy, the file a 502, and the
    service is never asked."""
    asked_before = len(internal.asked)
    for project in ("redir", "redirname"):
        r = requests.get(f"{strict.url}/root/pypi/+simple/{project}/", headers=JSON, timeout=30)
        assert r.status_code == 502, r.text
        assert "may not reach" in r.json()["message"] and SECRET not in r.content
    r = requests.get(f"{strict.url}/root/pypi/+simple/redirfile/", headers=JSON, timeout=30)
    assert r.status_code == 200, r.text
    [f] = r.json()["files"]
    got = requests.get(requests.compat.urljoin(f"{strict.url}/root/pypi/+simple/redirfile/", f["url"]), timeout=30)
    assert got.status_code == 502 and SECRET not in got.content
    assert "may not reach" in got.json()["message"]
    assert len(internal.asked) == asked_before


def test_a_root_mirror_follows_file_links_only_to_allowed_destinations(strict, internal):
    """root/pypi's upstream may serve files from another host, so root's mirrors follow
    such links; but the link to the internal service still fails the destination check."""
    r = requests.get(f"{strict.url}/root/pypi/+simple/linker/", headers=JSON, timeout=30)
    assert r.status_code == 200, r.text
    files = {f["filename"]: f["url"] for f in r.json()["files"]}
    assert set(files) == {"own-1.0.tar.gz", "secret-1.0.tar.gz"}
    base = f"{strict.url}/root/pypi/+simple/linker/"
    assert requests.get(requests.compat.urljoin(base, files["own-1.0.tar.gz"]), timeout=30).status_code == 200
    got = requests.get(requests.compat.urljoin(base, files["secret-1.0.tar.gz"]), timeout=30)
    assert got.status_code == 502 and SECRET not in got.content
    assert internal.asked.count("/files/secret-1.0.tar.gz") == 0


def test_a_user_mirror_takes_files_only_from_its_upstreams_origin(lenient, hostile, internal):
    """alice may make mirrors, and the admin allowed loopback; her mirror's upstream page
    links a file on another host (the internal service): the link is left out of her page
    and its path is a 404, the other host is never asked. root's mirror of the same
    upstream follows it (the rule is the owner's, not the destination's)."""
    root, alice, _ = _named_users(lenient)
    name = f"m{uuid.uuid4().hex[:6]}"
    assert _mirror(lenient, alice, name, f"{hostile.url}/simple/").status_code == 200
    base = f"{lenient.url}/alice/{name}/+simple/linker/"
    r = requests.get(base, headers=JSON, timeout=30)
    assert r.status_code == 200, r.text
    assert [f["filename"] for f in r.json()["files"]] == ["own-1.0.tar.gz"]
    secret_path = f"{lenient.url}/alice/{name}/+f/{SECRET_SHA[:3]}/{SECRET_SHA[3:16]}/secret-1.0.tar.gz"
    got = requests.get(secret_path, timeout=30)
    assert got.status_code == 404 and SECRET not in got.content
    assert internal.asked.count("/files/secret-1.0.tar.gz") == 0
    own = requests.get(requests.compat.urljoin(base, r.json()["files"][0]["url"]), timeout=30)
    assert own.status_code == 200 and own.content == b"an ordinary file"
    # root's mirror of the same upstream: the other host is allowed (loopback is, here)
    r = requests.get(f"{lenient.url}/root/pypi/+simple/linker/", headers=JSON, timeout=30)
    assert sorted(f["filename"] for f in r.json()["files"]) == ["own-1.0.tar.gz", "secret-1.0.tar.gz"]


class _Forwarder:
    """A TCP port forwarding to the server: another way to spell the server's address."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.target = port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_a_mirror_of_the_server_itself_is_refused(lenient):
    """root (or a mirror creator) points a mirror at this server itself, which would tie
    up threads waiting for its own answers: refused with 400 however the server is named
    (its address, ``localhost``, the Host the request came by), even with loopback allowed."""
    root = lenient.login("root", "root")
    port = lenient.port
    for url in (f"{lenient.url}/root/pypi/+simple/", f"http://localhost:{port}/root/pypi/+simple/",
                f"http://[::ffff:127.0.0.1]:{port}/x/", f"http://0.0.0.0:{port}/x/"):
        name = f"self{uuid.uuid4().hex[:6]}"
        r = _mirror(lenient, root, name, url)
        assert r.status_code == 400 and "this server itself" in r.json()["message"], (url, r.text)
    r = lenient.api("PUT", f"/root/self{uuid.uuid4().hex[:6]}", auth=root, headers={"Host": "127.0.0.9"},
                    json={"type": "mirror", "mirror_url": "http://127.0.0.9/root/pypi/+simple/"})
    assert r.status_code == 400 and "this server itself" in r.json()["message"], r.text
    r = lenient.api("PATCH", "/root/pypi", json={"mirror_url": f"{lenient.url}/root/pypi/+simple/"}, auth=root)
    assert r.status_code == 400 and "this server itself" in r.json()["message"], r.text


def test_a_server_listening_on_all_addresses_knows_them_as_itself(sec_servers, tmp_path):
    """On 0.0.0.0 the server is reached by any of the machine's addresses: a mirror_url
    with any of them and the server's port is a mirror of itself (400)."""
    wide = sec_servers(args=("--host", "0.0.0.0", "--mirror-allow-hosts", "127.0.0.0/8"),
                       allow_loopback_upstreams=False)
    root = wide.login("root", "root")
    for host in ("127.0.0.1", "127.0.0.2", "localhost"):
        url = f"http://{host}:{wide.port}/root/pypi/+simple/"
        r = wide.api("PUT", f"/root/w{uuid.uuid4().hex[:6]}", json={"type": "mirror", "mirror_url": url}, auth=root,
                     headers={"Host": "127.0.0.9"})
        assert r.status_code == 400 and "this server itself" in r.json()["message"], (url, r.text)


def test_a_mirror_loop_the_check_cannot_see_is_answered_at_once(lenient):
    """A mirror reaches the server through another address (a port forwarder here, a load
    balancer in life), which the creation check cannot know. Its requests carry the
    server's uuid, and the server answers its own requests at once with 409 "loop": the
    mirror's page is a quick 502, not a pile of threads waiting 30 s each."""
    root = lenient.login("root", "root")
    fwd = _Forwarder(lenient.port)
    try:
        name = f"loop{uuid.uuid4().hex[:6]}"
        r = _mirror(lenient, root, name, f"http://127.0.0.1:{fwd.port}/root/{name}/+simple/")
        assert r.status_code == 200, r.text
        t0 = time.monotonic()
        r = requests.get(f"{lenient.url}/root/{name}/+simple/anything/", headers=JSON, timeout=20)
        assert r.status_code == 502 and "409" in r.json()["message"], r.text
        assert time.monotonic() - t0 < 5
    finally:
        fwd.close()
    assert requests.get(f"{lenient.url}/+api", headers={"X-Devpi-Via": "another"}, timeout=10).status_code == 200


def test_upstreams_do_not_learn_the_server_uuid(lenient, hostile):
    """Every upstream request carries X-Devpi-Via (the loop guard's mark); it used to be the
    server's uuid, an identifier the upstream (anyone's mirror_url) could track and match
    with the server's own X-Devpi-Uuid. It is now a keyed hash of the server's secret: not
    the uuid nor derived from it alone, yet still recognised by the server as its own."""
    own = requests.get(f"{lenient.url}/+api", timeout=10).headers["X-Devpi-Uuid"]
    project = f"via{uuid.uuid4().hex[:6]}"  # a page no earlier test had cached
    hostile.routes[f"/simple/{project}/"] = (200, {"Content-Type": "text/html"}, b"<html><body></body></html>")
    seen = len(hostile.vias)
    r = requests.get(f"{lenient.url}/root/pypi/+simple/{project}/", headers=JSON, timeout=20)
    assert r.status_code == 200, r.text
    vias = [v for v in hostile.vias[seen:] if v is not None]
    assert vias, "the mirror sent no X-Devpi-Via"
    for via in vias:
        assert own not in via and hashlib.sha256(own.encode()).hexdigest() not in via, via
    assert requests.get(f"{lenient.url}/+api", headers={"X-Devpi-Via": own}, timeout=10).status_code == 200
    r = requests.get(f"{lenient.url}/+api", headers={"X-Devpi-Via": f"other, {vias[0]}"}, timeout=10)
    assert r.status_code == 409 and "loop" in r.json()["message"], r.text


def test_a_file_mirror_does_not_follow_symlinks_out_of_its_tree(lenient, tmp_path):
    """root mirrors a local tree in which someone left symbolic links to /etc/passwd (as a
    file, as a project page, and as a directory on the way): each is a 404, and the
    system file's bytes are never served."""
    passwd = open("/etc/passwd", "rb").read()
    tree = tmp_path / "tree"
    (tree / "simple" / "leak").mkdir(parents=True)
    (tree / "files").mkdir()
    os.symlink("/etc/passwd", tree / "files" / "leak-1.0.tar.gz")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "leak-1.5.tar.gz").write_bytes(passwd)
    os.symlink(tmp_path / "outside", tree / "files" / "out")
    (tree / "files" / "leak-2.0.tar.gz").write_bytes(b"a file of the tree")
    (tree / "simple" / "leak" / "index.html").write_text(
        '<a href="../../files/leak-1.0.tar.gz">leak-1.0.tar.gz</a>\n'
        '<a href="../../files/out/leak-1.5.tar.gz">leak-1.5.tar.gz</a>\n'
        '<a href="../../files/leak-2.0.tar.gz">leak-2.0.tar.gz</a>\n')
    (tree / "simple" / "page").mkdir()
    os.symlink("/etc/passwd", tree / "simple" / "page" / "index.html")
    root = lenient.login("root", "root")
    name = f"tree{uuid.uuid4().hex[:6]}"
    assert _mirror(lenient, root, name, f"file://{tree}/simple/").status_code == 200
    base = f"{lenient.url}/root/{name}/+simple/leak/"
    r = requests.get(base, headers=JSON, timeout=30)
    assert r.status_code == 200, r.text
    files = {f["filename"]: f["url"] for f in r.json()["files"]}
    assert sorted(files) == ["leak-1.0.tar.gz", "leak-1.5.tar.gz", "leak-2.0.tar.gz"]
    for filename, url in files.items():
        got = requests.get(requests.compat.urljoin(base, url), timeout=30)
        assert passwd not in got.content and b"root:" not in got.content, filename
        if filename == "leak-2.0.tar.gz":
            assert got.status_code == 200 and got.content == b"a file of the tree"
        else:
            assert got.status_code == 404, (filename, got.status_code, got.text)
    r = requests.get(f"{lenient.url}/root/{name}/+simple/page/", headers=JSON, timeout=30)
    assert r.status_code == 404 and b"root:" not in r.content
