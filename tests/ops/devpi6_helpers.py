"""The original devpi-server 6.20.3 as a real process: initialise, serve, fill over HTTP, export.

Its venv is the interop tool ``devpi-server`` (tests/interop/toolenv.py), made once per
machine. The server only ever talks to 127.0.0.1: root/pypi is pointed at the tests' local
upstream, and every other host goes to a dead proxy.
"""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from pathlib import Path

import requests
from interop.toolenv import tool_env
from support.ports import free_port

DEAD = "http://127.0.0.1:9"
ENV = {"http_proxy": DEAD, "https_proxy": DEAD, "HTTP_PROXY": DEAD, "HTTPS_PROXY": DEAD,
       "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
       "PYTHONWARNINGS": "ignore::UserWarning"}  # pyramid's pkg_resources warning


class Devpi6:
    """One devpi-server 6 server dir, and the server process while it runs."""

    def __init__(self, serverdir: Path, root_password: str):
        self.bin = tool_env("devpi-server").bin
        self.serverdir = serverdir
        self.root_password = root_password
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.session = requests.Session()
        self.session.trust_env = False
        self.logfile = serverdir.parent / "devpi6.log"

    def _run(self, *cmd: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **ENV})
        assert proc.returncode == 0, f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc

    def init(self) -> None:
        self._run(self.bin / "devpi-init", "--serverdir", self.serverdir, "--root-passwd", self.root_password)

    def start(self, timeout: float = 60) -> None:
        port = free_port()
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bin / "devpi-server"), "--serverdir", str(self.serverdir), "--host", "127.0.0.1",
                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ENV},
                start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"devpi-server 6 exited:\n{self.logfile.read_text(errors='replace')[-3000:]}")
            try:
                if self.session.get(self.url + "/+api", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"devpi-server 6 did not start:\n{self.logfile.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def export(self, directory: Path, *, mirrored: bool) -> Path:
        self._run(self.bin / "devpi-export", "--serverdir", self.serverdir, directory,
                  *(["--include-mirrored-files"] if mirrored else []))
        return directory

    # -- its HTTP API ----------------------------------------------------------------------------
    def headers(self, auth: tuple[str, str] | None) -> dict[str, str]:
        h = {"Accept": "application/json"}
        if auth:
            h["X-Devpi-Auth"] = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return h

    def api(self, method: str, path: str, *, auth: tuple[str, str] | None = None, **kw) -> requests.Response:
        return self.session.request(method, self.url + path, headers=self.headers(auth), timeout=60, **kw)

    def login(self, user: str, password: str) -> tuple[str, str]:
        r = self.api("POST", "/+login", json={"user": user, "password": password})
        assert r.status_code == 200, r.text
        return user, r.json()["result"]["password"]

    def serial(self) -> int:
        return int(self.api("GET", "/+api").headers["X-Devpi-Serial"])

    def upload(self, index: str, auth: tuple[str, str], filename: str, data: bytes, **metadata: str) -> None:
        """The legacy upload form as twine sends it (metadata in form fields)."""
        r = self.session.post(f"{self.url}/{index}/", data={":action": "file_upload", "protocol_version": "1",
                                                            **metadata},
                              files={"content": (filename, data)}, auth=auth, timeout=60)
        assert r.status_code == 200, r.text

    def upload_docs(self, index: str, auth: tuple[str, str], name: str, version: str, data: bytes) -> None:
        r = self.session.post(f"{self.url}/{index}/", data={":action": "doc_upload", "name": name,
                                                            "version": version},
                              files={"content": (f"{name}-{version}.doc.zip", data)}, auth=auth, timeout=60)
        assert r.status_code == 200, r.text
