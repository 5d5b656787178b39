"""Helpers of the disk tests (fsck, gc, the mirror cache budget): the ``devpi`` admin
commands as a user runs them, and looks at a server dir from outside."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from support.dists import write_wheel


def devpi_admin(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``devpi fsck|gc ...`` in its own process."""
    return subprocess.run([sys.executable, "-m", "devpi.client", *args], capture_output=True, text=True,
                          timeout=timeout)


def admin_json(*args: str, expect: int = 0) -> dict:
    done = devpi_admin(*args, "--json")
    assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def blob_path(serverdir: Path, sha256: str) -> Path:
    return serverdir / "blobs" / sha256[:2] / sha256


def blobs_on_disk(serverdir: Path) -> set[str]:
    root = serverdir / "blobs"
    return {p.name for d in root.iterdir() if len(d.name) == 2 and d.is_dir() for p in d.iterdir()
            if len(p.name) == 64}


def db(serverdir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{serverdir / 'devpi.sqlite'}?mode=ro", uri=True)


def referenced(serverdir: Path) -> set[str]:
    with db(serverdir) as conn:
        rows = conn.execute("SELECT sha256 FROM files UNION SELECT core_metadata_sha256 FROM files "
                            "WHERE core_metadata_sha256 IS NOT NULL UNION SELECT sha256 FROM mirror_files")
        return {r[0] for r in rows}


def plant_blob(serverdir: Path, data: bytes, age: float = 0.0) -> str:
    """A blob nobody references (as a crash between landing a blob and its commit leaves)."""
    sha = hashlib.sha256(data).hexdigest()
    path = blob_path(serverdir, sha)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    if age:
        backdate(path, age)
    return sha


def backdate(path: Path, seconds: float) -> None:
    """As if the file had been written ``seconds`` ago."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def backdate_candidates(serverdir: Path, seconds: float) -> None:
    """As if the collector had noted its unreferenced blobs ``seconds`` earlier."""
    with sqlite3.connect(serverdir / "devpi.sqlite", timeout=60) as conn:
        conn.execute("UPDATE blob_gc_candidates SET since = since - ?", (seconds,))


def upload_wheel(server, auth, index: str, tmp: Path, name: str, version: str, **kw) -> str:
    """Upload a real wheel; returns its sha256."""
    path = write_wheel(tmp, name, version, **kw)
    r = server.upload(index, path, auth)
    assert r.status_code == 200, r.text
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not reached after {timeout} s"
        time.sleep(0.1)
