"""A recording reverse proxy for replication tests: a replica is pointed at it instead of its
primary, so a test sees every request the replica sends (method, path, headers, whether its
body arrived whole) and can refuse or hold some of them.

Plain HTTP/1.0 toward the replica (one request per connection), answers buffered whole
(the primary's feed ends each response after the serials it had, so buffering only delays
nothing). A chunked request body is decoded; one that breaks off is recorded as incomplete
and not passed on.
"""
from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY = 64 << 20


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    complete: bool
    size: int


@dataclass
class Proxy:
    url: str
    seen: list[Seen] = field(default_factory=list)
    # a request for which this answers a status is refused with it (not passed on)
    refuse: Callable[[str, str], int | None] = lambda method, path: None
    # a request for which this answers an Event waits for it before being passed on
    hold: Callable[[str, str], threading.Event | None] = lambda method, path: None

    def writes(self) -> list[Seen]:
        return [s for s in self.seen if s.method not in ("GET", "HEAD")]


def _read_chunked(rfile) -> bytes | None:
    parts, size = [], 0
    while True:
        line = rfile.readline(1024)
        if not line:
            return None
        try:
            n = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            return None
        if n == 0:
            while (trailer := rfile.readline(1024)) not in (b"\r\n", b"\n"):
                if not trailer:
                    return None
            return b"".join(parts)
        size += n
        if size > MAX_BODY:
            return None
        data = rfile.read(n + 2)
        if len(data) < n + 2:
            return None
        parts.append(data[:n])


@contextmanager
def recording_proxy(target_url: str) -> Iterator[Proxy]:
    """A running proxy on 127.0.0.1 in front of ``target_url``."""
    target = urlsplit(target_url)
    proxy = Proxy("")

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = _read_chunked(self.rfile)
            else:
                length = int(headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                body = body if len(body) == length else None
            proxy.seen.append(Seen(self.command, self.path, headers, body is not None,
                                   len(body) if body is not None else -1))
            if body is None:
                self.close_connection = True
                return
            status = proxy.refuse(self.command, self.path)
            if status is not None:
                self._answer(status, [("Content-Type", "application/json")], b'{"message": "refused by the proxy"}')
                return
            event = proxy.hold(self.command, self.path)
            if event is not None:
                event.wait(60)
            out = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "transfer-encoding", "content-length", "connection")}
            out["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=out)
                resp = conn.getresponse()
                data = resp.read()
                headers_out = [(k, v) for k, v in resp.getheaders()
                               if k.lower() not in ("transfer-encoding", "content-length", "connection")]
                self._answer(resp.status, headers_out, data, resp.reason)
            finally:
                conn.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None = None) -> None:
            self.send_response(status, reason)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_PUSH = do_OPTIONS = _any

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
