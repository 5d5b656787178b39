"""Mirrors behind a corporate proxy that wants credentials (issue 24, finding 21).

The server is started with ``http_proxy``/``https_proxy`` naming a local proxy with
``user:password@`` in its URL. The proxy (a small threaded one here) answers 407 to any
request without the right ``Proxy-Authorization``; plain http goes to it as an
absolute-form GET, https as a CONNECT tunnel to an upstream with a certificate from
a test CA. The upstream listens on 127.0.0.2, which the test servers' ``no_proxy``
(127.0.0.1, localhost) does not name, so the proxy is used.
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator

import pytest
import requests
from support.server import ServerProcess

USER, PASSWORD = "proxyuser", "p@ss:word"
PROXY_USERINFO = "proxyuser:p%40ss%3Aword"  # as it is written in http_proxy
EXPECTED = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
WHEEL = b"bytes of a wheel behind the proxy"
SHA = hashlib.sha256(WHEEL).hexdigest()
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


class _UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/simple/behind/":
            body = f'<a href="/files/behind-1.0-py3-none-any.whl#sha256={SHA}">behind-1.0-py3-none-any.whl</a>'
            status, body = 200, body.encode()
        elif self.path == "/files/behind-1.0-py3-none-any.whl":
            status, body = 200, WHEEL
        else:
            status, body = 404, b"no"
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if self.path.startswith("/simple") else "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _serve(server: socketserver.BaseServer) -> None:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()


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


class _ProxyHandler(socketserver.StreamRequestHandler):
    """One request per connection: CONNECT opens a tunnel, an absolute-form GET is passed
    on with ``Connection: close``; without the right credentials, 407."""

    def handle(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1").strip()
        headers: dict[str, str] = {}
        while (h := self.rfile.readline(65536).decode("latin-1").strip()):
            key, _, value = h.partition(":")
            headers[key.strip().lower()] = value.strip()
        method, target, _ = line.split(" ", 2)
        ok = headers.get("proxy-authorization") == EXPECTED
        self.server.seen.append((method, target, ok))
        if not ok:
            self.wfile.write(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\n'
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True).start()
            _pipe(self.connection, upstream)
            return
        rest = target.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        host, port = hostport.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        sent = [f"{method} /{path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()
                                                 if k not in ("proxy-authorization", "connection")]
        upstream.sendall(("\r\n".join(sent + ["Connection: close", "", ""])).encode("latin-1"))
        _pipe(upstream, self.connection)


@pytest.fixture(scope="module")
def proxy() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ProxyHandler)
    server.daemon_threads = True
    server.seen = []
    _serve(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """(http URL, https URL, CA bundle path) of one upstream on 127.0.0.2, twice."""
    import trustme

    plain = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _UpstreamHandler)
    tls = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _UpstreamHandler)
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.2").configure_cert(context)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    for s in (plain, tls):
        _serve(s)
    yield (f"http://127.0.0.2:{plain.server_address[1]}/simple/", f"https://127.0.0.2:{tls.server_address[1]}/simple/",
           str(bundle))
    for s in (plain, tls):
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_mirror_through_a_proxy_that_wants_credentials(tmp_path, proxy, upstreams, scheme):
    """A page and a file of an upstream reached only through the authenticating proxy:
    plain http with Proxy-Authorization on each request, https with it on the CONNECT.
    The credentials never reach the upstream, and no request went without them."""
    plain, tls, bundle = upstreams
    upstream_url = plain if scheme == "http" else tls
    proxy_url = f"http://{PROXY_USERINFO}@127.0.0.1:{proxy.server_address[1]}"
    # the upstream is --mirror-url, so the policy allows it without a loopback allowance
    server = ServerProcess(tmp_path / "server", mirror_url=upstream_url, allow_loopback_upstreams=False,
                           env={"http_proxy": proxy_url, "https_proxy": proxy_url, "REQUESTS_CA_BUNDLE": bundle})
    server.start()
    try:
        seen_before = len(proxy.seen)
        base = f"{server.url}/root/pypi/+simple/behind/"
        r = requests.get(base, headers=JSON, timeout=30)
        assert r.status_code == 200, r.text
        [f] = r.json()["files"]
        got = requests.get(requests.compat.urljoin(base, f["url"]), timeout=30)
        assert got.status_code == 200 and got.content == WHEEL
        seen = proxy.seen[seen_before:]
        assert seen and all(ok for _, _, ok in seen), seen
        if scheme == "http":
            assert {target for _, target, _ in seen} >= {upstream_url + "behind/",
                                                          upstream_url.replace("/simple/", "/files/")
                                                          + "behind-1.0-py3-none-any.whl"}
        else:
            assert {method for method, _, _ in seen} == {"CONNECT"}
        assert PASSWORD not in server.log_text()
    finally:
        server.stop()


def test_no_proxy_networks_and_names_bypass_the_proxy(monkeypatch):
    """no_proxy may name networks (10.0.0.0/8), as requests and curl read it."""
    from devpi.server.mirror import upstream_client

    monkeypatch.setenv("http_proxy", "http://u:p@127.0.0.3:3128")
    monkeypatch.setenv("no_proxy", "10.0.0.0/8,.corp.example")
    assert upstream_client._proxy_for("http", "10.2.3.4") == (None, None)
    assert upstream_client._proxy_for("http", "pkgs.corp.example") == (None, None)
    proxy, auth = upstream_client._proxy_for("http", "11.0.0.1")
    assert proxy == ("127.0.0.3", 3128) and auth == "Basic " + base64.b64encode(b"u:p").decode()
