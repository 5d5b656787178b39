"""A tiny reverse proxy that serves a server under a path prefix, like nginx's `location /devpi/`.

``PrefixProxy(prefix="/devpi")`` listens on 127.0.0.1 (ephemeral port) and
forwards ``/devpi/<rest>`` to ``<backend>/<rest>`` with any method (PUSH
included), headers and body, and the reply back unchanged. Anything outside
the prefix is a 404, which is how a mis-built absolute URL shows up in tests.
"""
from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


class PrefixProxy:
    def __init__(self, prefix: str = "/devpi"):
        self.prefix = prefix.rstrip("/")
        self.backend = ""  # set before use: http://127.0.0.1:PORT
        self.outside_requests: list[str] = []  # paths that were not under the prefix
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                if not (self.path == proxy.prefix or self.path.startswith(proxy.prefix + "/")):
                    proxy.outside_requests.append(f"{self.command} {self.path}")
                    body = b'{"message": "outside the proxy prefix"}'
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                rest = self.path[len(proxy.prefix):] or "/"
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                target = urlsplit(proxy.backend)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                try:
                    conn.request(self.command, rest, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_PUSH = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> PrefixProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
