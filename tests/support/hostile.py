"""A tiny upstream that answers fixed routes, for answers a well-behaved index never gives.

Tests put ``routes[path] = (status, headers, body)``; ``asked`` records every path
requested. ``body`` is bytes (sent with a Content-Length, unless the headers carry one
already: a lying length is a route like any other), or an iterable of bytes, or a
callable returning one, sent piece by piece with no length and the connection closed
at the end (a page or file that trickles, or never ends).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Body = bytes | Iterable[bytes] | Callable[[], Iterable[bytes]]


class HostileUpstream:
    def __init__(self, protocol_version: str = "HTTP/1.0"):
        self.routes: dict[str, tuple[int, dict[str, str], Body]] = {}
        self.asked: list[str] = []
        self._protocol_version = protocol_version
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HostileUpstream:
        routes, asked = self.routes, self.asked

        class Handler(BaseHTTPRequestHandler):
            protocol_version = self._protocol_version

            def do_GET(self) -> None:
                asked.append(self.path)
                status, headers, body = routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if isinstance(body, bytes):
                    if "Content-Length" not in headers:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for piece in body() if callable(body) else body:
                        self.wfile.write(piece)
                        self.wfile.flush()
                except OSError:
                    pass  # the server under test gave up: as it should
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
