"""The mirror's HTTP client against real local HTTP servers: what it must get right on its
own now that it is not requests (redirects, credentials, gzip, short bodies, stale
keep-alive connections, proxies)."""
from __future__ import annotations

import gzip
import http.server
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from devpi.server.mirror.upstream_client import BodyTooLong, UpstreamClient


def gzip_bomb(mebibytes: int) -> bytes:
    """About 1 KiB of gzip per MiB of zeros it decodes to, made without compressing them all:
    full-flushed deflate blocks of the same input are the same bytes. Its trailer's check
    does not match; a reader that stops at its size limit never gets there."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    head = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    return head + block * (mebibytes - 1) + co.flush()


USERINFO = "someone:s%40cret"  # put in front of a local server's host: user "someone", password "s@cret"

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv = self.server
        srv.seen.append((self.path, dict(self.headers.items()), self.client_address[1]))
        if self.path == "/gz":
            self._reply(200, gzip.compress(b"<html>unzipped</html>"), {"Content-Encoding": "gzip"})
        elif self.path == "/plain":
            self._reply(200, b"plain body")
        elif self.path == "/bomb":
            self._reply(200, gzip_bomb(512), {"Content-Encoding": "gzip"})
        elif self.path == "/auth":
            self._reply(200, (self.headers.get("Authorization") or "none").encode())
        elif self.path.startswith("/to-other"):
            self._reply(302, b"", {"Location": srv.other + "/auth"})
        elif self.path == "/to-same":
            self._reply(301, b"", {"Location": "/auth"})
        elif self.path == "/short":
            self._reply(200, b"only half", {"Content-Length": "18"})
            self.close_connection = True
        elif self.path == "/loop":
            self._reply(302, b"", {"Location": "/loop"})
        elif self.path == "/trickle":  # a byte now and then, never the end
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
            self.close_connection = True
        else:
            self._reply(404, b"no")


@pytest.fixture
def servers() -> Iterator[tuple]:
    made = []
    for _ in range(2):
        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        s.seen = []
        s.url = f"http://127.0.0.1:{s.server_address[1]}"
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        made.append(s)
    made[0].other = made[1].url
    made[1].other = made[0].url
    yield tuple(made)
    for s in made:
        s.shutdown()
        s.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")


def test_gzip_body_is_decoded_and_the_connection_kept(servers):
    a, _ = servers
    client = UpstreamClient("test")
    assert client.get(a.url + "/gz").content == b"<html>unzipped</html>"
    assert client.get(a.url + "/plain").content == b"plain body"
    assert a.seen[0][1]["Accept-Encoding"] == "gzip"
    assert a.seen[0][2] == a.seen[1][2]  # same client port: one keep-alive connection


def test_identity_when_asked_and_streamed(servers):
    a, _ = servers
    client = UpstreamClient("test")
    with client.get(a.url + "/plain", {"Accept-Encoding": "identity"}, stream=True) as r:
        assert b"".join(r.iter_content(3)) == b"plain body"
    assert a.seen[0][1]["Accept-Encoding"] == "identity"


def test_credentials_go_to_their_origin_only(servers):
    a, b = servers
    client = UpstreamClient("test")
    creds = a.url.replace("://", f"://{USERINFO}@", 1)
    assert client.get(creds + "/auth").content.startswith(b"Basic ")
    same = client.get(creds + "/to-same")
    assert same.content.startswith(b"Basic ") and same.url == creds + "/auth"
    other = client.get(creds + "/to-other")
    assert other.status_code == 200 and other.content == b"none"  # the redirect left the origin
    assert other.url == b.url + "/auth"


def test_netrc_credentials(servers, tmp_path, monkeypatch):
    a, _ = servers
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login bob password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    import base64

    assert UpstreamClient("test").get(a.url + "/auth").content == b"Basic " + base64.b64encode(b"bob:hunter2")


def test_short_body_is_an_error_not_a_shorter_page(servers):
    a, _ = servers
    client = UpstreamClient("test")
    with pytest.raises(Exception, match="IncompleteRead|incomplete"):
        client.get(a.url + "/short")
    assert client.get(a.url + "/plain").content == b"plain body"  # the pool recovered


def test_stale_keep_alive_connection_is_replaced(servers):
    a, _ = servers
    client = UpstreamClient("test")
    assert client.get(a.url + "/plain").status_code == 200
    a.shutdown()  # the server goes away and comes back on the same port: the pooled socket is dead
    a.server_close()
    port = a.server_address[1]
    again = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    again.seen = []
    threading.Thread(target=again.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        assert client.get(a.url + "/plain").content == b"plain body"
    finally:
        again.shutdown()
        again.server_close()


def test_an_answer_is_read_within_its_time_and_size(servers):
    """The read timeout bounds each read; a body that trickles in or never stops must still
    end: BodyTooLong once it takes longer than max_seconds or grows past max_bytes."""
    a, _ = servers
    t0 = time.monotonic()
    with pytest.raises(BodyTooLong, match="not complete after 1s"):
        UpstreamClient("test").get(a.url + "/trickle", max_seconds=1.0)
    assert time.monotonic() - t0 < 3
    with pytest.raises(BodyTooLong, match="more than 5 bytes"):
        UpstreamClient("test").get(a.url + "/plain", max_bytes=5)
    assert UpstreamClient("test").get(a.url + "/plain", max_bytes=10).content == b"plain body"


def test_a_gzip_bomb_is_cut_off_at_the_size_limit_not_after_decoding(servers):
    """Half a megabyte of gzip that decodes to 512 MiB: the limit counts decoded bytes, and
    no more than one piece past it is ever held in memory."""
    a, _ = servers
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLong, match="more than 4194304 bytes"):
            UpstreamClient("test").get(a.url + "/bomb", max_bytes=4 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak >> 20} MiB held while reading a 4 MiB-limited answer"


def test_redirect_loop_ends(servers):
    a, _ = servers
    with pytest.raises(Exception, match="redirects"):
        UpstreamClient("test").get(a.url + "/loop")


def test_proxy_from_environment_and_no_proxy(servers, monkeypatch):
    a, b = servers
    monkeypatch.setenv("http_proxy", b.url)  # b plays the proxy: it sees the absolute URL
    monkeypatch.setenv("no_proxy", "localhost")
    r = UpstreamClient("test").get("http://index.example.invalid:8080/plain")
    assert r.content == b"no"  # b answered (404 body) for a path it does not serve
    assert b.seen[-1][0] == "http://index.example.invalid:8080/plain"
    assert b.seen[-1][1]["Host"] == "index.example.invalid:8080"
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert UpstreamClient("test").get(a.url + "/plain").content == b"plain body"
    assert a.seen[-1][0] == "/plain"


def test_file_urls(tmp_path):
    (tmp_path / "simple" / "pkg").mkdir(parents=True)
    (tmp_path / "simple" / "pkg" / "index.html").write_text("<a href='x'>x</a>")
    (tmp_path / "elsewhere.txt").write_text("not the tree's")
    client = UpstreamClient("test", local_root=str(tmp_path / "simple"))
    r = client.get(f"file://{tmp_path}/simple/pkg/")
    assert r.status_code == 200 and r.content == b"<a href='x'>x</a>"
    assert r.headers["Content-Type"] == "text/html"
    assert client.get(f"file://{tmp_path}/simple/nothere/").status_code == 404
    # only below local_root, however the path is spelled; never without one
    for outside in (f"file://{tmp_path}/elsewhere.txt", f"file://{tmp_path}/simple/../elsewhere.txt",
                    f"file://{tmp_path}/simple/%2e%2e/elsewhere.txt", f"file://{tmp_path}/simple-not/x"):
        with pytest.raises(ValueError, match="outside the mirror's local tree"):
            client.get(outside)
    with pytest.raises(ValueError, match="outside the mirror's local tree"):
        UpstreamClient("test").get(f"file://{tmp_path}/simple/pkg/")


def test_tls_is_verified_against_the_system_or_the_named_bundle(tmp_path, monkeypatch):
    """An upstream whose certificate no trusted CA signed is refused; naming its CA in
    REQUESTS_CA_BUNDLE (what people behind an intercepting proxy set) makes it work."""
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/plain"
    try:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            UpstreamClient("test").get(url)
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        assert UpstreamClient("test").get(url).content == b"plain body"
    finally:
        server.shutdown()
        server.server_close()
