"""Faults on the way (real processes): a file that rotted on the primary's disk, and a replica
SIGKILLed again and again while it applies a batch. Replication goes on, nothing wrong is
stored on the replica, and /+status names the problem while there is one."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from support.populate import SIMPLE_JSON, upload_wheel
from support.replication import primary_args, replica_args, serial_of, status, wait_until, write_secret


def _blob(serverdir: Path, sha256: str) -> Path:
    return serverdir / "blobs" / sha256[:2] / sha256


def _file_url(s, index: str, project: str) -> str:
    page = f"{s.url}/{index}/+simple/{project}/"
    href = requests.get(page, headers={"Accept": SIMPLE_JSON}, timeout=30).json()["files"][0]["url"]
    return urllib.parse.urljoin(page, href)


def _failing(replica) -> dict[str, dict]:
    return {f["sha256"]: f for f in status(replica)["replication"]["files"]["failing"]}


def test_a_file_rotten_on_the_primary_is_never_stored_and_is_named_until_it_is_mended(make_server, tmp_path):
    secret = write_secret(tmp_path)
    primary = make_server(args=primary_args(secret))
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    _, good = upload_wheel(primary, "alice/dev", "good-lib", "1.0", alice)
    _, rotten = upload_wheel(primary, "alice/dev", "rotten-lib", "1.0", alice)
    original = _blob(primary.serverdir, rotten).read_bytes()
    _blob(primary.serverdir, rotten).write_bytes(original[:100] + b"bit rot" + original[107:])

    replica = make_server(args=replica_args(primary.url, secret))
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
    wait_until(lambda: rotten in _failing(replica), what="/+status naming the rotten file")
    reason = _failing(replica)[rotten]["reason"]
    assert reason, status(replica)
    wait_until(lambda: _blob(replica.serverdir, good).exists(), what="the good file arriving")
    assert hashlib.sha256(_blob(replica.serverdir, good).read_bytes()).hexdigest() == good
    assert not _blob(replica.serverdir, rotten).exists()
    r = requests.get(_file_url(replica, "alice/dev", "rotten-lib"), timeout=60)
    assert r.status_code == 503 and r.json()["message"] and r.headers.get("Retry-After")
    # the stream went on past it
    upload_wheel(primary, "alice/dev", "later-lib", "1.0", alice)
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="later serials arriving")
    assert requests.get(_file_url(replica, "alice/dev", "later-lib"), timeout=60).status_code == 200

    _blob(primary.serverdir, rotten).write_bytes(original)  # the admin restores it from a backup
    wait_until(lambda: rotten not in _failing(replica), timeout=120, what="the retry fetching the mended file")
    r = requests.get(_file_url(replica, "alice/dev", "rotten-lib"), timeout=60)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == rotten


def _stored_serial(replica) -> int:
    """The last serial the replica's database holds (read beside it, SQLite or PostgreSQL)."""
    query = "SELECT coalesce(max(serial), -1) FROM changelog"
    if replica.storage:
        import psycopg

        try:
            with psycopg.connect(replica.storage, connect_timeout=5) as conn:
                return conn.execute(query).fetchone()[0]
        except psycopg.Error:  # the schema not yet made
            return -1
    try:
        with sqlite3.connect(f"file:{replica.serverdir / 'devpi.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(query).fetchone()[0]
    except sqlite3.Error:  # not created yet, or the schema not yet made
        return -1


def _kill_when_between(replica, low: int, high: int) -> int | None:
    """Run the replica's command and SIGKILL it as soon as its database holds a serial in
    (low, high): in the middle of catching up. The serial it had stored, or None if the
    moment was missed (it caught up first, or never started)."""
    proc = subprocess.Popen(replica.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "no_proxy": "127.0.0.1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if low < _stored_serial(replica) < high:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            if _stored_serial(replica) >= high:
                return None
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stored = _stored_serial(replica)
    return stored if stored < high else None


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_a_replica_killed_mid_batch_again_and_again_ends_identical_and_consistent(make_server, tmp_path, request,
                                                                                  storage):
    secret = write_secret(tmp_path)
    pg = request.getfixturevalue("pg_cluster") if storage == "postgresql" else None
    primary = make_server(args=primary_args(secret), storage=pg.new_database() if pg else None)
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    for i in range(300):
        upload_wheel(primary, "alice/dev", f"lib-{i}", "1.0", alice)
    target = serial_of(primary)
    replica = make_server(args=replica_args(primary.url, secret), storage=pg.new_database() if pg else None)
    replica.kill()
    shutil.rmtree(replica.serverdir)  # start from nothing: the kills land in the first catch-up
    replica.serverdir.mkdir()
    if pg:
        replica.storage = pg.new_database()
    cuts = []
    for step in range(1, 5):
        stored = _kill_when_between(replica, max(cuts, default=0), target * step // 5)
        if stored is not None:
            cuts.append(stored)
    assert cuts, "every start caught up before the kill: the test needs a bigger batch"
    replica.start()
    wait_until(lambda: serial_of(replica) >= target, timeout=120, what="the replica catching up after the kills")
    wait_until(lambda: status(replica)["replication"]["files"]["pending"] == 0, what="the files arriving")
    for path in ("/alice/dev/+simple/", "/alice/dev/+simple/lib-119/", "/alice/dev/+simple/lib-0/"):
        a = requests.get(primary.url + path, headers={"Accept": SIMPLE_JSON}, timeout=30)
        b = requests.get(replica.url + path, headers={"Accept": SIMPLE_JSON}, timeout=30)
        assert a.content == b.content and a.headers["ETag"] == b.headers["ETag"]
    assert status(replica)["replication"]["files"]["failing_count"] == 0
    storage = ["--storage", replica.storage] if replica.storage else []
    fsck = subprocess.run([sys.executable, "-m", "devpi.client", "fsck", "--serverdir", str(replica.serverdir),
                           *storage, "--json"], capture_output=True, text=True, timeout=300)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert json.loads(fsck.stdout)["problems"] == 0
