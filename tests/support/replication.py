"""Helpers for tests of replication (tests/replication, tests/security/test_sec_replication.py):
a secret file, liveness waits, /+status and serials of real server processes."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import requests
from support import waiting

SECRET = "replica-test-secret-0123456789abcdef"
REPLICA_HEADER = "X-Devpi-Replica-Secret"


def write_secret(tmp_path: Path) -> Path:
    path = tmp_path / "replica-secret"
    path.write_text(SECRET + "\n")
    return path


def wait_until(check: Callable[[], object], timeout: float = 60.0, what: str = "the condition") -> object:
    """Liveness only: poll until ``check`` gives something true; a request that fails
    meanwhile (a server restarting) counts as not yet."""
    def tolerant() -> object:
        try:
            return check()
        except requests.RequestException:
            return None

    return waiting.wait_until(tolerant, timeout, what, interval=0.1)


def status(s) -> dict:
    return requests.get(s.url + "/+status", headers={"Accept": "application/json"}, timeout=30).json()["result"]


def serial_of(s) -> int:
    return int(requests.get(s.url + "/+api", timeout=30).headers["X-Devpi-Serial"])


def primary_args(secret_file: Path) -> tuple[str, ...]:
    return ("--replica-secret-file", str(secret_file))


def replica_args(primary_url: str, secret_file: Path, *more: str) -> tuple[str, ...]:
    return ("--primary-url", primary_url, "--replica-secret-file", str(secret_file), *more)
