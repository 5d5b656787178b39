"""Finding 2, through push: ``posturl`` must not let a user read the server's network.

Anyone may create a user (by default), upload a package to an index of their own
and push it "externally" to any ``posturl``: the server then POSTs to that URL.
Before, that URL skipped the mirror destination policy, redirects were followed
(a 302 or 303 after a POST becomes a GET of whatever the redirect names) and the
first 500 bytes of a non-2xx answer went back in the action log: an internal
service (here one on 127.0.0.1 that answers a secret) could be asked and read.
What must hold: a posturl that resolves to a loopback, private or link-local
address is refused (403) unless ``--mirror-allow-hosts`` allows it, before any
connection is made; a redirect is never followed (400, the internal service is
not asked); and of an answer only its status and reason are reported, never
its body.
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from support.dists import wheel_bytes

SECRET = b"internal-secret-7f3a"


@dataclass
class Service:
    """A plain HTTP service on 127.0.0.1 that records what it was asked."""

    url: str = ""
    asked: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, headers)


@contextmanager
def service(status: int, body: bytes, headers: dict[str, str] | None = None) -> Iterator[Service]:
    """Answers every GET and POST with ``status``, ``headers`` and ``body``."""
    svc = Service()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            svc.asked.append((self.command, self.path, dict(self.headers)))
            try:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the server under test closed without reading the body: as it should

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    svc.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield svc
    finally:
        server.shutdown()
        server.server_close()


def attacker_with_a_release(srv) -> tuple[tuple[str, str], str]:
    """A fresh user (no privilege: anyone may create one) with a wheel on their own index."""
    auth = srv.create_user(f"eve{uuid.uuid4().hex[:8]}", "pw")
    srv.create_index(auth, "dev")
    filename, data = wheel_bytes("probe", "1.0")
    r = requests.post(f"{srv.url}/{auth[0]}/dev/", auth=auth, timeout=60, files={"content": (filename, data)},
                      data={":action": "file_upload", "protocol_version": "1", "name": "probe", "version": "1.0"})
    assert r.status_code == 200, r.text
    return auth, f"{auth[0]}/dev"


def push_to(srv, auth, index: str, posturl: str) -> requests.Response:
    return srv.api("PUSH", f"/{index}", auth=auth, json={"name": "probe", "version": "1.0", "posturl": posturl,
                                                           "username": "u", "password": "p"})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_push_to_a_loopback_service_is_refused(sec_servers, host):
    """The attacker pushes to an internal service on the server's loopback (a name that
    resolves there too). With the default policy (loopback not allowed) the push is a 403
    naming the policy, the service is never connected to, and its answer (a 403 whose body
    is a secret) is nowhere in what the attacker gets."""
    srv = sec_servers(allow_loopback_upstreams=False)
    auth, index = attacker_with_a_release(srv)
    with service(403, SECRET) as internal:
        posturl = internal.url.replace("127.0.0.1", host) + "/admin/"
        r = push_to(srv, auth, index, posturl)
        assert r.status_code == 403, r.text
        assert "loopback" in r.json()["message"] and "--mirror-allow-hosts" in r.json()["message"], r.text
        assert SECRET not in r.content
        assert internal.asked == []


@pytest.mark.parametrize("status", [302, 303, 307])
def test_a_redirect_from_the_push_target_is_not_followed(sec_servers, status):
    """The push target is allowed (the admin listed its host:port) but answers the upload
    with a redirect to an internal service that is not. The redirect is not followed (no
    request reaches the internal service), the push is a 400 saying so, and nothing of
    the internal answer comes back."""
    with service(418, SECRET) as internal:
        with service(status, b"moved", {"Location": internal.url + "/secret"}) as redirector:
            port = redirector.url.rsplit(":", 1)[1]
            srv = sec_servers(allow_loopback_upstreams=False, args=("--mirror-allow-hosts", f"127.0.0.1:{port}"))
            auth, index = attacker_with_a_release(srv)
            r = push_to(srv, auth, index, redirector.url + "/legacy/")
            assert [a[:2] for a in redirector.asked] == [("POST", "/legacy/")]
            assert internal.asked == []
            assert r.status_code == 400 and "redirect" in r.json()["message"], r.text
            assert SECRET not in r.content and b"secret" not in r.content


def test_an_error_answer_is_reported_by_status_not_body(sec_servers):
    """Even where the admin allows the destination, the body of an answer is not passed
    back: a service that answers every request with its data (here a 401 page with a
    secret) must not be readable through the push's action log. Status and reason are."""
    srv = sec_servers()  # loopback allowed, as the test receivers need
    auth, index = attacker_with_a_release(srv)
    with service(401, SECRET + b" " + b"x" * 2000) as target:
        r = push_to(srv, auth, index, target.url + "/legacy/")
    assert r.status_code == 502, r.text
    assert SECRET not in r.content
    [upload] = [a for a in r.json()["result"] if a[1] == "upload"]
    assert upload[0] == 401 and upload[3] == "401 Unauthorized", upload
    assert len(r.content) < 1000


def test_the_servers_netrc_credentials_are_not_sent(sec_servers, tmp_path):
    """The server's ~/.netrc may hold credentials for hosts it talks to; a user's push
    without credentials must not borrow them (only what the user gave is sent)."""
    with service(200, b"") as target:
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login server-login password server-secret\n")
        netrc.chmod(0o600)
        srv = sec_servers(env={"NETRC": str(netrc)})
        auth, index = attacker_with_a_release(srv)
        r = srv.api("PUSH", f"/{index}", auth=auth,
                    json={"name": "probe", "version": "1.0", "posturl": target.url + "/legacy/"})
        assert r.status_code == 200, r.text
        assert target.asked and all("Authorization" not in h for _, _, h in target.asked), target.asked
