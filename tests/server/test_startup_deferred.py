"""Start-up work that no request waits for runs after the first answer (core.after_start),
and uvicorn is loaded without its command line: both keep the first answer early."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

from devpi.server.app import RequestLog
from devpi.server.config import ServerConfig
from devpi.server.core import Core


def test_after_start_tasks_wait_for_start_background_then_run_in_order(tmp_path):
    core = Core(ServerConfig(serverdir=tmp_path / "srv"))
    ran: list[str] = []
    done = threading.Event()

    def failing():
        ran.append("failing")
        raise RuntimeError("a task that fails does not stop the others")

    core.after_start("one", lambda: ran.append("one"))
    core.after_start("failing", failing)
    core.after_start("two", lambda: ran.append("two"))
    time.sleep(0.1)
    assert ran == []  # nothing before the server says so
    thread = core.start_background()
    assert core.start_background() is thread  # once
    thread.join(10)
    assert ran == ["one", "failing", "two"]
    core.after_start("late", lambda: (ran.append("late"), done.set()))  # after the start: at once
    assert done.wait(10) and ran[-1] == "late"
    core.storage.close()


def test_request_log_calls_its_after_first_hook_once():
    calls: list[int] = []
    log = RequestLog(lambda environ, start: (start("200 OK", []), [b"x"])[1])
    log.after_first = lambda: calls.append(1)
    for _ in range(3):
        assert log({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda status, headers, exc=None: None) == [b"x"]
    assert calls == [1]


def test_a_server_nobody_asks_still_does_its_background_start_up_work(make_server):
    """No request comes: the blob directories (made by a background task) appear anyway."""
    s = make_server()
    blobs = s.serverdir / "blobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all((blobs / f"{i:02x}").is_dir() for i in range(256)):
        time.sleep(0.05)
    assert all((blobs / f"{i:02x}").is_dir() for i in range(256))
    assert s.stop() == 0
    assert "start-up task" not in s.log_text()  # none failed


def test_uvicorn_loads_without_its_command_line_and_stays_whole():
    code = """if True:
        import importlib, sys
        from devpi.server.http import httpserver
        light = sorted(m for m in ("uvicorn.main", "click", "multiprocessing") if m in sys.modules)
        from uvicorn import Config, Server
        assert Config is httpserver.uvicorn_config.Config and Server is httpserver.uvicorn_server.Server
        assert "uvicorn.main" not in sys.modules
        import uvicorn
        print(light, uvicorn.__version__ == importlib.import_module("uvicorn._version").__version__, callable(uvicorn.run))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True", "True"]


def test_routes_are_compiled_once_per_method_and_routes_added_later_still_match():
    import bottle
    from devpi.server.http.routing import OnceRouter, new_app

    app = new_app()
    assert isinstance(app.router, OnceRouter)
    compiled: list[str] = []
    original = bottle.Router._compile

    def counting(self, method):
        compiled.append(method)
        return original(self, method)

    bottle.Router._compile = counting
    try:
        for i in range(30):
            app.route(f"/<user>/r{i}", "GET", lambda user, i=i: f"{user} {i}")
        app.route("/<user>/w", "PUT", lambda user: "put")

        def call(method: str, path: str) -> tuple[str, bytes]:
            out: list[str] = []
            body = b"".join(app({"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": None},
                                lambda status, headers, exc=None: out.append(status)))
            return out[0], body

        assert call("GET", "/alice/r29") == ("200 OK", b"alice 29")
        assert sorted(compiled) == ["GET", "PUT"]  # once each, not once per route
        assert call("GET", "/bob/r0") == ("200 OK", b"bob 0")
        assert call("DELETE", "/bob/w")[0].startswith("405")  # the other methods are known
        app.route("/<user>/late", "GET", lambda user: "late")
        assert call("GET", "/carol/late") == ("200 OK", b"late")
        assert sorted(compiled) == ["GET", "GET", "PUT"]
    finally:
        bottle.Router._compile = original


def test_pages_that_cannot_be_built_leave_the_api_served(caplog):
    """devpi.web is built lazily now; if that fails, browsers get the API's answer (as when
    devpi.web failed to load at start), never an error of the middleware."""
    from devpi.web.middleware import WebMiddleware

    class CoreWithoutStorage:
        def __init__(self):
            self.tasks = []

        def after_start(self, name, task):
            self.tasks.append(name)

    core = CoreWithoutStorage()
    mw = WebMiddleware(lambda environ, start: (start("200 OK", []), [b"api"])[1], core)
    assert core.tasks == ["web"]
    browser = {"REQUEST_METHOD": "GET", "PATH_INFO": "/root/pypi", "HTTP_ACCEPT": "text/html",
               "HTTP_USER_AGENT": "Mozilla/5.0"}
    for _ in range(2):
        assert mw(dict(browser), lambda status, headers, exc=None: None) == [b"api"]
    assert mw.prepare() is None
    assert caplog.text.count("devpi.web failed to load") == 1
