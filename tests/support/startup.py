"""Helpers for watching a server start (tests of http/startup_lane.py): a gate that holds the
server's assembly (the plugin support/startup_gate.py), and requests that tell an answer from
the start-up lane from one that waits for the application."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import requests
from devpi.server.repos import page_snapshot

from .server import ServerProcess

TESTS = Path(__file__).resolve().parents[1]
HTML, JSON = "text/html", "application/vnd.pypi.simple.v1+json"
SAME_HEADERS = ("ETag", "Content-Type", "Content-Length", "Cache-Control", "Vary", "X-Devpi-Serial", "X-Devpi-Uuid",
                "X-Devpi-Server-Version", "X-Devpi-Api-Version", "X-Devpi-Primary-Uuid", "X-PyPI-Last-Serial")


class Gate:
    """The file the startup_gate plugin waits for; open at first."""

    def __init__(self, path: Path):
        self.path = path
        self.open()

    def open(self) -> None:
        self.path.touch()

    def close(self) -> None:
        self.path.unlink()

    @property
    def env(self) -> dict[str, str]:
        return {"DEVPI_SERVER_PLUGINS": "support.startup_gate", "PYTHONPATH": str(TESTS),
                "DEVPI_TEST_START_GATE": str(self.path)}


class GatedStart:
    """``s.start()`` with the gate closed, in a thread (it returns once the server listens: at
    once when it answers from a snapshot, else after the assembly, so after the gate opens)."""

    def __init__(self, s: ServerProcess, gate: Gate):
        self.s, self.gate = s, gate
        gate.close()
        self.thread = threading.Thread(target=s.start, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        """Open the gate; return once the application answers."""
        self.gate.open()
        self.thread.join(60)
        assert not self.thread.is_alive(), self.s.log_text()[-3000:]
        assert first_answer(self.s.url + "/+api").status_code == 200


def first_answer(url: str, **kw) -> requests.Response:
    """The first answer of a server that is starting (connection refused until it listens)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return requests.get(url, timeout=30, **kw)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def pending(url: str, method: str = "GET", **kw) -> bool:
    """Whether a request gets no answer within a second: it waits for the application (or the
    server is not even listening, as when it has no snapshot to answer from)."""
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        try:
            requests.request(method, url, timeout=1, **kw)
        except requests.Timeout:
            return True
        except requests.ConnectionError:
            time.sleep(0.05)
            continue
        return False
    return True


def snapshot_head(s: ServerProcess) -> dict | None:
    path = s.serverdir / page_snapshot.FILE_NAME
    if not path.exists():
        return None
    data = path.read_bytes()
    assert data.startswith(page_snapshot.MAGIC)
    return json.loads(data[len(page_snapshot.MAGIC):data.index(b"\n", len(page_snapshot.MAGIC))])
