"""A replica of a primary whose history has no row images (filled by `devpi import`) starts
from the primary's snapshot (GET /+replica/snapshot) and then follows its feed (real
processes, SQLite and PostgreSQL): the same pages byte for byte, pip installs from it,
later uploads reach it as usual."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from support.local_http import QuietHandler, serve
from support.pipinstall import installed, pip_install
from support.populate import SIMPLE_JSON, populate, upload_wheel
from support.ports import free_port
from support.replication import (
    REPLICA_HEADER,
    SECRET,
    primary_args,
    replica_args,
    serial_of,
    status,
    wait_until,
    write_secret,
)
from support.server import ServerProcess

DEVPI = str(Path(sys.executable).with_name("devpi"))
PAGES = [(f"/{index}/+simple/{project}/", accept) for index in ("alice/dev", "alice/merged")
         for project in ("pkg-a", "other-lib") for accept in ("text/html", SIMPLE_JSON)]
PAGES += [("/alice/dev/+simple/", "text/html"), ("/alice/dev/+simple/", SIMPLE_JSON),
          ("/alice/dev/pkg-a", "application/json"), ("/alice/dev/pkg-a/1.0", "application/json")]


def _devpi(*args: str) -> None:
    r = subprocess.run([DEVPI, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def imported_primary(make_server, tmp_path: Path, storage: str | None, secret: Path):
    """A primary made by `devpi import` of an export of a populated server: none of its
    serials has row images, so its feed cannot start a replica."""
    src = make_server()
    state = populate(src, tmp_path)
    _devpi("export", "--serverdir", str(src.serverdir), str(tmp_path / "backup"))
    src.stop()
    target = tmp_path / "imported"
    _devpi("import", "--serverdir", str(target), *(["--storage", storage] if storage else []),
           str(tmp_path / "backup"))
    primary = make_server(serverdir=target, storage=storage, args=primary_args(secret))
    return primary, state


def _bodies(s) -> dict:
    """Status, ETag and body of each page; the JSON API's absolute links name the server
    asked, so its own URL is taken out of them."""
    out = {}
    for path, accept in PAGES:
        r = requests.get(s.url + path, headers={"Accept": accept}, timeout=30)
        out[(path, accept)] = (r.status_code, r.headers.get("ETag"), r.content.replace(s.url.encode(), b"SERVER"))
    return out


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_fresh_replica_of_an_imported_primary_starts_from_its_snapshot(make_server, tmp_path, request, engine):
    def storage():
        return request.getfixturevalue("pg_cluster").new_database() if engine == "postgresql" else None

    secret = write_secret(tmp_path)
    primary, state = imported_primary(make_server, tmp_path, storage(), secret)
    imported_serial = serial_of(primary)
    r = requests.get(primary.url + "/+replica/changes", params={"since": -1, "wait": 0},
                     headers={REPLICA_HEADER: SECRET}, timeout=30)
    assert r.status_code == 409 and "row images" in r.json()["message"]  # the feed alone cannot do it

    replica = make_server(storage=storage(), args=replica_args(primary.url, secret))
    assert serial_of(replica) == imported_serial
    assert "snapshot of serial" in replica.log_text()
    before = _bodies(primary)
    assert sum(1 for v in before.values() if v[0] == 200) == len(PAGES)
    assert _bodies(replica) == before
    wait_until(lambda: status(replica)["replication"]["files"]["pending"] == 0, what="the files arriving")
    assert status(replica)["replication"]["files"]["failing_count"] == 0
    result = pip_install(replica.url + "/alice/dev/+simple/", tmp_path / "t1", "pkg-a==1.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "t1") == {"pkg-a": "1.0"}
    # the snapshot brought the primary's secret: its logins and tokens hold on the replica
    assert replica.login("alice", "secret-pw")
    r = requests.get(replica.url + "/+api", auth=state["auth"], timeout=30)
    assert r.json()["result"]["authstatus"][0] == "ok"
    # the changelog came along: the replica answers it as the primary does
    cl = f"/+changelog/{imported_serial}"
    root = ("root", "root")
    assert replica.api("GET", cl, auth=root).json() == primary.api("GET", cl, auth=root).json()

    # later writes on the primary follow as usual
    upload_wheel(primary, "alice/dev", "after-lib", "1.0", state["auth"])
    primary.create_index(state["auth"], "later", bases=[])
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica following the feed")
    assert serial_of(replica) == serial_of(primary) > imported_serial
    for path in ("/alice/dev/+simple/after-lib/", "/alice/later/+simple/"):
        a = requests.get(primary.url + path, timeout=30)
        b = requests.get(replica.url + path, timeout=30)
        assert a.status_code == b.status_code == 200 and a.content == b.content
    result = pip_install(replica.url + "/alice/dev/+simple/", tmp_path / "t2", "after-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "t2") == {"after-lib": "1.0"}

    # a restart continues from the replica's serial (no second snapshot)
    replica.restart()
    assert replica.log_text().count("snapshot of serial") == 1
    assert _bodies(replica) == _bodies(primary)


def test_a_replica_left_behind_by_a_moved_primary_takes_its_snapshot_at_restart(make_server, tmp_path):
    """The primary moved to a new server dir by export and import (same uuid, same serials,
    no row images) while a replica was behind: the replica's serial cannot be fed any more,
    so at its restart it replaces its state with the primary's snapshot, in one transaction,
    and follows on."""
    secret = write_secret(tmp_path)
    old = make_server(args=primary_args(secret))
    replica = make_server(args=replica_args(old.url, secret))
    alice = old.create_user("alice", "alice-pw")
    old.create_index(alice, "dev", bases=[])
    upload_wheel(old, "alice/dev", "moved-lib", "1.0", alice)
    wait_until(lambda: serial_of(replica) >= serial_of(old), what="the replica catching up")
    behind = serial_of(replica)
    replica.stop()
    upload_wheel(old, "alice/dev", "moved-lib", "2.0", alice)
    old.create_index(alice, "more", bases=["alice/dev"])
    _devpi("export", "--serverdir", str(old.serverdir), str(tmp_path / "backup"))
    old.stop()
    _devpi("import", "--serverdir", str(tmp_path / "moved"), str(tmp_path / "backup"))
    primary = make_server(serverdir=tmp_path / "moved", args=primary_args(secret))
    upload_wheel(primary, "alice/dev", "after-move", "1.0", alice)

    replica.args = replica_args(primary.url, secret)
    replica.start()
    assert "replaced this replica's state with its snapshot" in replica.log_text()
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica following on")
    assert serial_of(replica) == serial_of(primary) > behind
    for path in ("/alice/dev/+simple/moved-lib/", "/alice/more/+simple/moved-lib/", "/alice/dev/+simple/after-move/"):
        a, b = requests.get(primary.url + path, timeout=30), requests.get(replica.url + path, timeout=30)
        assert a.status_code == b.status_code == 200 and a.content == b.content, path
    result = pip_install(replica.url + "/alice/more/+simple/", tmp_path / "t", "moved-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "t") == {"moved-lib": "2.0"}
    assert status(replica)["replication"]["last_error"] is None


class HangingSnapshotPrimary:
    """A stand-in for the primary (a tiny local HTTP server): its feed answers 409 as the
    imported primary's does, and its snapshot is the real primary's without the end line,
    after which it holds the connection open until the test ends."""

    def __init__(self, real_url: str):
        self.real_url = real_url
        self.sent = threading.Event()
        self.release = threading.Event()

    def __enter__(self) -> HangingSnapshotPrimary:
        fake = self
        body = requests.get(self.real_url + "/+replica/snapshot", headers={REPLICA_HEADER: SECRET}, timeout=60).content
        self.partial = b"".join(line + b"\n" for line in body.splitlines()[:-1])

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                if self.path.startswith("/+replica/snapshot"):
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(fake.partial)
                    self.wfile.flush()
                    fake.sent.set()
                    fake.release.wait(120)
                    return
                data = json.dumps({"message": "no row images for serial 0"}).encode()
                self.send_response(409 if self.path.startswith("/+replica/changes") else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

        self.server = serve(Handler)
        self.url = self.server.url
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.close()


def test_a_replica_killed_during_its_snapshot_starts_over_cleanly(make_server, tmp_path):
    """The snapshot is loaded in one transaction: a replica killed in the middle (every table
    but the last already inserted, waiting for the rest) holds nothing of it, and its next
    start takes the whole snapshot again."""
    secret = write_secret(tmp_path)
    primary, _ = imported_primary(make_server, tmp_path, None, secret)
    serverdir = tmp_path / "replica"
    with HangingSnapshotPrimary(primary.url) as hanging:
        half = ServerProcess(serverdir, args=replica_args(hanging.url, secret, "--replica-start-wait", "300"))
        half.port = free_port()
        with open(tmp_path / "half.log", "wb") as log:
            proc = subprocess.Popen(half.command(), stdout=log, stderr=log, start_new_session=True)
        try:
            # every row is on its way; the replica waits for the end line inside its transaction
            # (or is still inserting: the kill may come at any point of the load)
            assert hanging.sent.wait(120), (tmp_path / "half.log").read_text()
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with sqlite3.connect(serverdir / "devpi.sqlite") as conn:
        assert conn.execute("select count(*) from users").fetchone()[0] == 0
        assert conn.execute("select count(*) from changelog").fetchone()[0] == 0
        assert conn.execute("select key, value from kv").fetchall() == [("serial", "-1")]
    replica = make_server(serverdir=serverdir, args=replica_args(primary.url, secret))
    assert serial_of(replica) == serial_of(primary)
    assert _bodies(replica) == _bodies(primary)
