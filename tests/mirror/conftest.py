"""Fixtures for the mirror tests: one local upstream and one server per test module.

Tests in a module share them and stay out of each other's way by using their
own project names, their own mirror indexes (``make_mirror``) and targeted
upstream failure switches, which they clear again.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.server import ServerProcess


@pytest.fixture(scope="module")
def mserver(tmp_path_factory, upstream):
    """A server whose root/pypi mirrors the module's upstream."""
    s = ServerProcess(tmp_path_factory.mktemp("mirror") / "server", mirror_url=upstream.url).start()
    yield s
    s.stop()
    # the mirror's cache writes are committed in the background: a failing one only logs
    assert "mirror: could not store" not in s.log_text()


@pytest.fixture(scope="module")
def root(mserver):
    return mserver.login("root", "root")


@pytest.fixture
def hostile():
    """A small upstream answering fixed routes, for answers the well-behaved test upstream
    never gives: yields (base URL, routes, paths asked). A route is (status, headers, body);
    body may be an iterable of bytes, sent piece by piece (a page that never ends)."""
    routes: dict[str, tuple] = {}
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            status, headers, body = routes.get(self.path, (404, {}, b"not found"))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if isinstance(body, bytes):
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for piece in body:
                    self.wfile.write(piece)
                    self.wfile.flush()
            except OSError:
                pass  # the server under test gave up: as it should
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes, asked
    server.shutdown()
    server.server_close()
