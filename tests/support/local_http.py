"""A throwaway HTTP server on loopback for fakes (a hostile primary, a proxy): started on a
free port in a daemon thread, closed by the test. The fakes differ only in their handler."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that keeps the test output clean (no access log lines on stderr)."""

    def log_message(self, *args) -> None:
        pass


class LocalServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(handler: type[BaseHTTPRequestHandler]) -> LocalServer:
    return LocalServer(handler)
