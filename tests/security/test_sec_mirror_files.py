"""Hostile upstream files and stored bytes (issue 24, findings 3, 7 and 9).

The attacker controls what an upstream sends for a file (its Content-Encoding, its bytes,
its length, its pace), or a mirror page naming the sha256 of a file someone else uploaded
and deleted. What must hold: a file body is never decoded, it is bounded in size and
time, a client never receives a complete file whose bytes do not match the page's
sha256, every stored file is served as a download (never as a page of this origin), and
a mirror serves only bytes its own upstream sent it.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import socket
import threading
import time
from urllib.parse import urljoin

import pytest
import requests
from support.hostile import HostileUpstream
from support.upstream import make_wheel

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
DOWNLOAD_HEADERS = ("X-Content-Type-Options", "Content-Security-Policy", "Content-Disposition")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def hostile():
    """A small upstream answering fixed routes (support/hostile.py): yields (base URL, routes)."""
    with HostileUpstream() as up:
        yield up.url, up.routes


@pytest.fixture(scope="module")
def server(sec_servers):
    return sec_servers()


@pytest.fixture(scope="module")
def root(server):
    return server.login("root", "root")


def add_page(hostile, project: str, files: list[dict]) -> None:
    """The upstream page of ``project`` (PEP 691 JSON) listing ``files``."""
    base, routes = hostile
    doc = {"meta": {"api-version": "1.0"}, "name": project, "files": files}
    routes[f"/simple/{project}/"] = (200, {"Content-Type": JSON_TYPE}, json.dumps(doc).encode())


def mirror(server, auth, name: str, hostile) -> str:
    """A mirror index root/<name> of the hostile upstream; returns its simple URL."""
    server.create_index(auth, name, type="mirror", mirror_url=hostile[0] + "/simple/")
    return f"{server.url}/root/{name}/+simple/"


def file_url(simple: str, project: str, filename: str) -> str:
    r = requests.get(f"{simple}{project}/", headers={"Accept": JSON_TYPE}, timeout=30)
    assert r.status_code == 200, r.text
    [f] = [f for f in r.json()["files"] if f["filename"] == filename]
    return urljoin(f"{simple}{project}/", f["url"])


def get_outcome(url: str, **kw) -> tuple[int, bytes | None]:
    """(status, complete body), or (status, None) when the transfer broke off (the
    connection closed short of its length): what a client can trust."""
    try:
        r = requests.get(url, timeout=60, **kw)
        return r.status_code, r.content
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
        return 200, None


def raw_http10(url: str) -> tuple[int, dict[str, str], bytes]:
    """A GET as an HTTP/1.0 client sends it, read to the connection's end: for such a client
    a body without Content-Length is complete when the connection closes."""
    hostport, path = url.split("://", 1)[1].split("/", 1)
    host, port = hostport.split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"GET /{path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# -- finding 3: Content-Encoding, wrong bytes, size and time ---------------------------------------------


def test_gzip_encoded_file_is_not_decoded_and_never_served_as_a_complete_wrong_file(server, root, hostile):
    """The attacker's upstream sends a small gzip body with ``Content-Encoding: gzip`` (though
    identity was asked) whose decoded form is what the page's sha256 names. The body must not
    be decoded (no inflated temp file); the client must never get a complete 200 whose bytes
    differ from the page's sha256, and nothing is stored."""
    decoded = b"A" * (8 << 20)
    encoded = gzip.compress(decoded)
    hostile[1]["/files/bomb-1.0.tar.gz"] = (200, {"Content-Encoding": "gzip",
                                                   "Content-Type": "application/octet-stream"}, encoded)
    add_page(hostile, "bomb", [{"filename": "bomb-1.0.tar.gz", "url": "/files/bomb-1.0.tar.gz",
                                "hashes": {"sha256": sha(decoded)}}])
    simple = mirror(server, root, "enc1", hostile)
    url = file_url(simple, "bomb", "bomb-1.0.tar.gz")
    for _ in range(2):
        status, body = get_outcome(url)
        assert not (status == 200 and body is not None and sha(body) != sha(decoded)), (status, len(body or b""))
        assert not (status == 200 and body is not None), "upstream sent no bytes matching the page"
        assert status in (200, 502), status  # 200 only as a broken transfer
    assert not (server.serverdir / "blobs" / sha(decoded)[:2] / sha(decoded)).exists()


def test_a_targz_sent_with_content_encoding_gzip_is_served_as_sent(server, root, hostile):
    """A misconfigured upstream (a web server labelling ``.tar.gz`` files
    ``Content-Encoding: gzip``) sends the file's own bytes, which match the page. They are
    taken as sent, so the file verifies and is served byte for byte, not decoded."""
    payload = gzip.compress(b"tar bytes, honestly" * 5000)
    hostile[1]["/files/honest-1.0.tar.gz"] = (200, {"Content-Encoding": "gzip"}, payload)
    add_page(hostile, "honest", [{"filename": "honest-1.0.tar.gz", "url": "/files/honest-1.0.tar.gz",
                                  "hashes": {"sha256": sha(payload)}}])
    simple = mirror(server, root, "enc2", hostile)
    r = requests.get(file_url(simple, "honest", "honest-1.0.tar.gz"), timeout=60)
    assert r.status_code == 200, r.text
    assert "Content-Encoding" not in r.headers
    assert r.content == payload


def test_gzip_bomb_without_hash_is_stored_raw_not_inflated(server, root, hostile):
    """A link without any hash to a 64 MB gzip bomb sent as ``Content-Encoding: gzip``: the
    server must keep and send the bytes upstream sent (a few tens of KB), never inflate them
    into a 64 MB temp file and answer."""
    encoded = gzip.compress(b"\0" * (64 << 20))
    hostile[1]["/files/nohash-1.0.tar.gz"] = (200, {"Content-Encoding": "gzip"}, encoded)
    add_page(hostile, "nohash", [{"filename": "nohash-1.0.tar.gz", "url": "/files/nohash-1.0.tar.gz",
                                  "hashes": {}}])
    simple = mirror(server, root, "enc3", hostile)
    r = requests.get(file_url(simple, "nohash", "nohash-1.0.tar.gz"), timeout=60)
    assert r.status_code == 200, r.text[:200]
    assert len(r.content) == len(encoded) and r.content == encoded


def _slow(data: bytes, pieces: int = 8, pause: float = 0.15):
    step = len(data) // pieces + 1

    def body():
        for i in range(0, len(data), step):
            yield data[i:i + step]
            time.sleep(pause)
    return body


@pytest.mark.parametrize("length_known", [True, False])
def test_wrong_bytes_never_reach_any_client_complete(server, root, hostile, length_known):
    """Upstream sends 3 MB of bytes that do not match the page's sha256, slowly, to several
    clients at once (one leads the download, the others follow it), with and without a
    Content-Length. Each client must get an error or a broken transfer, never a complete
    200; an HTTP/1.0 client (for which a closed connection ends a body of unknown length)
    included."""
    good, bad = b"g" * (3 << 20), b"b" * (3 << 20)
    name = f"wrong{int(length_known)}"
    headers = {"Content-Length": str(len(bad))} if length_known else {}
    hostile[1][f"/files/{name}-1.0.tar.gz"] = (200, headers, _slow(bad))
    add_page(hostile, name, [{"filename": f"{name}-1.0.tar.gz", "url": f"/files/{name}-1.0.tar.gz",
                              "hashes": {"sha256": sha(good)}}])
    simple = mirror(server, root, f"wrong{int(length_known)}", hostile)
    url = file_url(simple, name, f"{name}-1.0.tar.gz")
    outcomes: list = []

    def client() -> None:
        outcomes.append(get_outcome(url))

    def client10() -> None:
        status, headers, body = raw_http10(url)
        complete = "content-length" not in headers or len(body) == int(headers["content-length"])
        outcomes.append((status, body if complete else None))

    threads = [threading.Thread(target=client) for _ in range(3)] + [threading.Thread(target=client10)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(90)
    assert len(outcomes) == 4
    for status, body in outcomes:
        assert not (status == 200 and body is not None), (status, len(body or b""))


def test_wrong_length_against_the_pages_size_is_refused(server, root, hostile):
    """The page declares a 1,000-byte file; upstream sends 5 MB (announced, then not
    announced). Neither is accepted: the download stops at the declared size."""
    small = b"s" * 1000
    big = b"x" * (5 << 20)
    hostile[1]["/files/sized-1.0.tar.gz"] = (200, {}, big)
    hostile[1]["/files/sized-2.0.tar.gz"] = (200, {}, _slow(big, pieces=20, pause=0.01))
    add_page(hostile, "sized", [{"filename": f"sized-{v}.tar.gz", "url": f"/files/sized-{v}.tar.gz",
                                 "hashes": {"sha256": sha(small)}, "size": 1000} for v in ("1.0", "2.0")])
    simple = mirror(server, root, "sized", hostile)
    for v in ("1.0", "2.0"):
        status, body = get_outcome(file_url(simple, "sized", f"sized-{v}.tar.gz"))
        assert status == 502 or body is None, (status, len(body or b""))
        if status == 502:
            assert "message" in requests.get(file_url(simple, "sized", f"sized-{v}.tar.gz"), timeout=60).json()


@pytest.fixture(scope="module")
def capped(sec_servers):
    return sec_servers(args=("--mirror-max-file-size", "1M", "--mirror-download-timeout", "3"))


def test_file_of_unstated_size_is_capped(capped, hostile):
    """No size on the page, no Content-Length: upstream streams 20 MB. The server stops at
    ``--mirror-max-file-size`` (1M here) and says so; nothing is stored."""
    auth = capped.login("root", "root")
    data = b"z" * (20 << 20)
    hostile[1]["/files/endless-1.0.tar.gz"] = (200, {}, _slow(data, pieces=80, pause=0.0))
    add_page(hostile, "endless", [{"filename": "endless-1.0.tar.gz", "url": "/files/endless-1.0.tar.gz",
                                   "hashes": {}}])
    simple = mirror(capped, auth, "cap1", hostile)
    r = requests.get(file_url(simple, "endless", "endless-1.0.tar.gz"), timeout=60)
    assert r.status_code == 502, r.status_code
    assert "larger than" in r.json()["message"]
    assert not (capped.serverdir / "blobs" / sha(data)[:2] / sha(data)).exists()


def test_trickling_download_is_cut_at_the_deadline(capped, hostile):
    """Upstream sends a byte every 0.2 s forever (each read succeeds, so no read timeout
    fires). The download ends at ``--mirror-download-timeout`` (3 s here): the client gets a
    502 or a broken transfer well before a minute, never a 200 it can use."""
    auth = capped.login("root", "root")

    def trickle():
        for _ in range(600):
            yield b"t"
            time.sleep(0.2)

    hostile[1]["/files/trickle-1.0.tar.gz"] = (200, {}, trickle)
    add_page(hostile, "trickle", [{"filename": "trickle-1.0.tar.gz", "url": "/files/trickle-1.0.tar.gz",
                                   "hashes": {}}])
    simple = mirror(capped, auth, "cap2", hostile)
    t0 = time.monotonic()
    status, body = get_outcome(file_url(simple, "trickle", "trickle-1.0.tar.gz"))
    assert time.monotonic() - t0 < 30
    assert status == 502 or body is None, status


# -- finding 7: stored files are downloads, never pages of this origin --------------------------------------


def test_mirrored_html_link_is_served_as_a_download(server, root, hostile):
    """The attacker's upstream page links an ``.html`` file holding a script (no hash: it is
    served from ``+e/``). It must come as a download: not text/html, nosniff, a sandbox CSP
    without resources, and a download disposition, so the script never runs on this origin."""
    evil = b"<html><script>fetch('/+api').then(r=>document.title='pwned')</script></html>"
    hostile[1]["/files/evil-1.0.html"] = (200, {"Content-Type": "text/html"}, evil)
    add_page(hostile, "evil", [{"filename": "evil-1.0.html", "url": "/files/evil-1.0.html", "hashes": {}}])
    simple = mirror(server, root, "html", hostile)
    url = file_url(simple, "evil", "evil-1.0.html")
    assert "/+e/" in url
    for _ in range(2):  # streamed from upstream, then from the store
        r = requests.get(url, timeout=60)
        assert r.status_code == 200, r.text
        _assert_download(r, "application/octet-stream")


def test_uploaded_files_are_served_as_downloads(server, tmp_path):
    """An uploaded wheel must come with a download type (octet-stream), nosniff, a
    sandbox CSP and a download disposition; installers are unaffected by them."""
    auth = server.create_user("dl-user", "dl-pass-123")
    server.create_index(auth, "dev")
    filename, data, _ = make_wheel("dl-pkg", "1.0")
    path = tmp_path / filename
    path.write_bytes(data)
    assert server.upload("dl-user/dev", path, auth).status_code == 200
    r = requests.get(f"{server.url}/dl-user/dev/+simple/dl-pkg/", headers={"Accept": JSON_TYPE}, timeout=30)
    url = urljoin(r.url, r.json()["files"][0]["url"])
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content == data
    _assert_download(got, "application/octet-stream")
    assert filename in got.headers["Content-Disposition"]


def _assert_download(r: requests.Response, ctype: str) -> None:
    assert r.headers["Content-Type"].split(";")[0] == ctype, r.headers
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    csp = r.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp
    assert r.headers["Content-Disposition"].startswith("attachment")


# -- finding 9: a mirror serves only bytes from its own upstream ---------------------------------------------


def test_deleted_upload_is_not_served_through_a_mirror_page_naming_its_hash(server, root, hostile, tmp_path):
    """alice uploads ``secretpkg`` (a credentials file inside) to alice/dev and deletes it.
    An upstream page then names the same sha256 under a URL that answers 404, or other
    bytes. bob, reading the mirror, must never get alice's bytes; alice's index answers 410."""
    alice = server.create_user("alice", "alice-pass-123")
    server.create_index(alice, "dev")
    filename, secret, _ = make_wheel("secretpkg", "1.0", extra_files={"secretpkg/creds.txt": b"password=hunter2"})
    path = tmp_path / filename
    path.write_bytes(secret)
    assert server.upload("alice/dev", path, alice).status_code == 200
    r = requests.get(f"{server.url}/alice/dev/+simple/secretpkg/", headers={"Accept": JSON_TYPE}, timeout=30)
    alice_url = urljoin(r.url, r.json()["files"][0]["url"])
    assert requests.get(alice_url, timeout=30).content == secret
    assert server.api("DELETE", "/alice/dev/secretpkg/1.0", auth=alice).status_code == 200
    assert requests.get(alice_url, timeout=30).status_code in (404, 410)

    hostile[1]["/files/other/" + filename] = (200, {}, b"other bytes entirely")  # and /files/gone/ is a 404
    server.create_user("bob", "bob-pass-123")
    for where in ("gone", "other"):
        add_page(hostile, "secretpkg", [{"filename": filename, "url": f"/files/{where}/{filename}",
                                         "hashes": {"sha256": sha(secret)}}])
        simple = mirror(server, root, f"bob-{where}", hostile)
        url = file_url(simple, "secretpkg", filename)
        for headers in ({}, {"Range": "bytes=0-99"}):
            status, body = get_outcome(url, headers=headers, auth=("bob", "bob-pass-123"))
            assert body is None or secret not in body and body != secret[:100], (where, status)
            assert status != 200 or body is None, (where, status)


def test_a_mirror_whose_upstream_sends_the_same_bytes_serves_them(server, root, hostile, tmp_path):
    """The fetch-and-verify path still deduplicates honestly: when a mirror's own upstream
    sends bytes matching the page, they are served (and share the stored blob)."""
    owner = server.create_user("carol", "carol-pass-123")
    server.create_index(owner, "dev")
    filename, data, _ = make_wheel("sharedpkg", "1.0")
    path = tmp_path / filename
    path.write_bytes(data)
    assert server.upload("carol/dev", path, owner).status_code == 200
    hostile[1]["/files/shared/" + filename] = (200, {}, data)
    add_page(hostile, "sharedpkg", [{"filename": filename, "url": f"/files/shared/{filename}",
                                     "hashes": {"sha256": sha(data)}}])
    simple = mirror(server, root, "shared", hostile)
    r = requests.get(file_url(simple, "sharedpkg", filename), timeout=30)
    assert r.status_code == 200 and r.content == data


@pytest.mark.browser
def test_mirrored_html_runs_no_script_in_a_browser(server, root, hostile):
    """In headless Chromium (where the issue saw the script run): opening a mirrored
    ``.html`` file's URL must start a download, and its script must not run on this
    server's origin (it would call back ``/+api?pwned``, which the server's log would show)."""
    import os

    from playwright.sync_api import Error, sync_playwright

    chromium = os.environ.get("DEVPI_TEST_CHROMIUM", "/usr/bin/chromium")
    evil = b"<html><body><script>fetch('/+api?pwned=1');document.title='pwned'</script></body></html>"
    hostile[1]["/files/script-1.0.html"] = (200, {"Content-Type": "text/html"}, evil)
    add_page(hostile, "script", [{"filename": "script-1.0.html", "url": "/files/script-1.0.html", "hashes": {}}])
    simple = mirror(server, root, "browser", hostile)
    url = file_url(simple, "script", "script-1.0.html")
    assert requests.get(url, timeout=30).content == evil  # stored: the browser gets it from the store
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            try:
                with page.expect_download(timeout=10_000) as download:
                    try:
                        page.goto(url)
                    except Error:
                        pass  # "Download is starting": what a download looks like to goto
                assert download.value.suggested_filename == "script-1.0.html"
            finally:
                title = page.title() if not page.is_closed() else ""
            time.sleep(0.5)
        finally:
            browser.close()
    assert title != "pwned"
    assert "pwned" not in server.log_text()
