"""The real devpi server as a child process on 127.0.0.1 with an ephemeral port.

Tests talk to it over HTTP only, exactly as pip, twine and the CLI do.
"""
from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from .ports import free_port

_LISTENING = re.compile(r"listening on (http://\S+)")
DEAD_UPSTREAM = "http://127.0.0.1:9/simple/"  # nothing listens there: no test reaches a real index


class _PortTaken(Exception):
    """The server could not bind its port: something else holds it."""


LOOPBACK_UPSTREAMS = ("--mirror-allow-hosts", "127.0.0.0/8,::1")


class ServerProcess:
    """One server process. Test upstreams live on loopback, which the mirror policy refuses
    by default (doc/mirror.md, "Security policy"): unless ``allow_loopback_upstreams`` is
    False, the server is started with ``--mirror-allow-hosts 127.0.0.0/8,::1`` (given before
    ``args``, so a test's own ``--mirror-allow-hosts`` in ``args`` replaces it)."""

    def __init__(self, serverdir: Path, *, root_password: str = "root", mirror_url: str | None = None,
                 storage: str | None = None, args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 allow_loopback_upstreams: bool = True):
        self.serverdir = Path(serverdir)
        self.allow_loopback_upstreams = allow_loopback_upstreams
        self.root_password = root_password
        self.mirror_url = mirror_url or DEAD_UPSTREAM
        self.storage = storage
        self.args = tuple(args)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.port = 0
        self.logfile = self.serverdir.parent / f"{self.serverdir.name}.log"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "devpi.server", "--serverdir", str(self.serverdir), "--host", "127.0.0.1",
               "--port", str(self.port), "--root-passwd", self.root_password, "--mirror-url", self.mirror_url]
        if self.storage:
            cmd += ["--storage", self.storage]
        if self.allow_loopback_upstreams:
            cmd += LOOPBACK_UPSTREAMS
        return cmd + list(self.args)

    def start(self, timeout: float = 30) -> ServerProcess:
        """Start on this server's port; the first start takes a free one from the test pool.

        A port someone else took meanwhile is waited for a little after a restart (clients keep
        their URLs), and a fresh one is chosen on a first start.
        """
        fresh = not self.port
        deadline = time.monotonic() + 10
        while True:
            if fresh:
                self.port = free_port()
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"port {self.port} stayed in use:\n{self.log_text()}") from None
                time.sleep(0 if fresh else 0.5)

    def _start_once(self, timeout: float) -> ServerProcess:
        env = {**os.environ, **(self.env or {})}
        env.setdefault("http_proxy", "http://127.0.0.1:9")  # anything not on loopback fails at once
        env.setdefault("https_proxy", "http://127.0.0.1:9")
        env["no_proxy"] = "127.0.0.1,localhost"
        self._out = self.serverdir.parent / f"{self.serverdir.name}.stdout"
        self._log_start = self.logfile.stat().st_size if self.logfile.exists() else 0
        with open(self._out, "wb") as out, open(self.logfile, "ab") as err:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _LISTENING.search(self._out.read_text(errors="replace"))
            if m:
                self.url = m.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                return self
            if self.proc.poll() is not None:
                if f"cannot listen on 127.0.0.1:{self.port}: Address already in use" in self._new_log():
                    raise _PortTaken(self.port)
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_text()}")

    def _new_log(self) -> str:
        """What this start has logged so far (the log file is shared by all starts)."""
        with open(self.logfile, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(self.stuck_report(timeout))  # shown with the failing test's output
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def wait_exit(self, timeout: float) -> int:
        """The exit code; if the server does not exit in time, fail with its threads' stacks."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(self.stuck_report(timeout)) from None

    def stuck_report(self, timeout: float) -> str:
        """Ask a server that did not exit for its threads' stacks (SIGUSR2) and return them."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)
        time.sleep(1)
        return f"server did not exit within {timeout:.0f} s; the end of its log:\n{self.log_text()[-12000:]}"

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()  # same port: clients keep their URLs

    # -- conveniences for tests -------------------------------------------------------
    def api(self, method: str, path: str, *, json=None, auth: tuple[str, str] | None = None,
            headers: dict | None = None, **kw) -> requests.Response:
        h = {"Accept": "application/json", **(headers or {})}
        if auth:
            h["X-Devpi-Auth"] = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return requests.request(method, self.url + path, json=json, headers=h, timeout=60, **kw)

    def login(self, user: str, password: str) -> tuple[str, str]:
        r = self.api("POST", "/+login", json={"user": user, "password": password})
        r.raise_for_status()
        return user, r.json()["result"]["password"]

    def create_user(self, user: str, password: str, **config) -> tuple[str, str]:
        r = self.api("PUT", f"/{user}", json={"password": password, **config})
        assert r.status_code == 201, r.text
        return self.login(user, password)

    def create_index(self, auth: tuple[str, str], name: str, **config) -> dict:
        r = self.api("PUT", f"/{auth[0]}/{name}", json=config, auth=auth)
        assert r.status_code == 200, r.text
        return r.json()["result"]

    def upload(self, index: str, path: Path, auth: tuple[str, str], **fields) -> requests.Response:
        """Upload a distribution the way twine does (multipart, Basic auth)."""
        from pkginfo import get_metadata

        md = get_metadata(str(path))
        data = {":action": "file_upload", "protocol_version": "1", "name": md.name, "version": md.version,
                **fields}
        with open(path, "rb") as f:
            return requests.post(f"{self.url}/{index}/", data=data, files={"content": (path.name, f)},
                                 auth=auth, timeout=60)


@contextlib.contextmanager
def server_factory(base: Path, default_args: tuple[str, ...] = ()) -> Iterator[Callable[..., ServerProcess]]:
    """A factory of real servers under ``base``, all stopped when the block ends (module-scoped
    fixtures share one per test module); ``default_args`` go before each server's own."""
    started: list[ServerProcess] = []

    def make(**kw) -> ServerProcess:
        serverdir = kw.pop("serverdir", None) or base / f"server{len(started)}"
        kw["args"] = (*default_args, *kw.get("args", ()))
        s = ServerProcess(Path(serverdir), **kw).start()
        started.append(s)
        return s

    try:
        yield make
    finally:
        for s in started:
            s.stop()
