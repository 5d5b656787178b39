"""The snapshot a primary sends a fresh replica (GET /+replica/snapshot) under attack: without
or with a wrong secret; and a hostile primary (a tiny local HTTP server) whose snapshot
names a table that is not replicated, a column its table does not have, sets the
replica's own serial, breaks off, miscounts, or mixes up its tables. Each is refused with
nothing stored (the replica's database stays empty) and the replica's start ends with one
line naming the problem (a fresh replica serves nothing before it has a state)."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
import requests
from support.local_http import QuietHandler, serve
from support.populate import upload_wheel
from support.replication import REPLICA_HEADER, SECRET, primary_args, replica_args, wait_until, write_secret


@pytest.fixture
def primary(make_server, tmp_path):
    s = make_server(args=primary_args(write_secret(tmp_path)))
    alice = s.create_user("alice", "alice-pw")
    s.create_index(alice, "dev", bases=[])
    upload_wheel(s, "alice/dev", "hello-lib", "1.0", alice)
    return s


def _error(r: requests.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()["message"]


def test_the_snapshot_needs_the_secret(primary, make_server):
    url = primary.url + "/+replica/snapshot"
    assert "secret" in _error(requests.get(url, timeout=30), 401)
    assert "wrong" in _error(requests.get(url, headers={REPLICA_HEADER: "x" * 40}, timeout=30), 403)
    assert _error(requests.get(url, headers={REPLICA_HEADER: SECRET + "x"}, timeout=30), 403)
    assert _error(requests.post(url, headers={REPLICA_HEADER: SECRET}, timeout=30), 405)
    for path in ("/+replica/snapshot/", "/+replica/snapshot/..%2f..%2fdevpi.sqlite", "/+replica/snapshot%00"):
        r = requests.get(primary.url + path, headers={REPLICA_HEADER: SECRET}, timeout=30)
        assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json"), path
        assert b"SQLite" not in r.content
    plain = make_server()
    assert "not enabled" in _error(requests.get(plain.url + "/+replica/snapshot",
                                                headers={REPLICA_HEADER: SECRET}, timeout=30), 404)


def test_the_snapshot_is_one_serial_with_counts_and_no_local_rows(primary):
    r = requests.get(primary.url + "/+replica/snapshot", headers={REPLICA_HEADER: SECRET}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.content.splitlines()]
    head, rows, end = lines[0], lines[1:-1], lines[-1]
    serial = int(requests.get(primary.url + "/+api", timeout=30).headers["X-Devpi-Serial"])
    assert head["serial"] == serial == end["end"]
    names = [t["name"] for t in head["tables"]]
    assert "audit" not in names and "mirror_pages" not in names and "replication_rows" not in names
    assert end["counts"] == {n: sum(1 for row in rows if row["t"] == n) for n in names}
    assert not [row for row in rows if row["t"] == "kv" and row["r"][0] == "serial"]


def test_snapshots_give_their_slot_back_when_read_or_dropped(primary):
    """At most two stream at once; one read to the end, or dropped by the replica, frees its
    slot (else a primary would answer 503 for good after two)."""
    url, headers = primary.url + "/+replica/snapshot", {REPLICA_HEADER: SECRET}
    for _ in range(4):
        r = requests.get(url, headers=headers, timeout=30)
        assert r.status_code == 200 and b'"end"' in r.content.splitlines()[-1]

    def drop_one() -> bool:
        with requests.get(url, headers=headers, stream=True, timeout=30) as r:
            if r.status_code == 503:  # the slot of the one dropped just before is not back yet
                assert r.headers["Retry-After"] and "try again" in r.json()["message"]
                return False
            assert r.status_code == 200
            r.raw.read(10)
            return True

    for _ in range(4):
        wait_until(drop_one, what="a free slot")
    wait_until(lambda: requests.get(url, headers=headers, timeout=30).status_code == 200,
               what="a snapshot after dropped ones")


class HostilePrimary:
    """Its feed answers 409 (no row images, as an imported primary's does); its snapshot is
    ``body``."""

    def __init__(self, body: bytes):
        self.body = body
        self.asked: list[str] = []

    def __enter__(self) -> HostilePrimary:
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                fake.asked.append(self.path)
                if self.path.startswith("/+replica/snapshot"):
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(fake.body)
                    return
                self.send_response(409)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"message": "no row images for serial 0"}).encode())

        self.server = serve(Handler)
        self.url = self.server.url
        return self

    def __exit__(self, *exc) -> None:
        self.server.close()


def _real(primary) -> list[dict]:
    r = requests.get(primary.url + "/+replica/snapshot", headers={REPLICA_HEADER: SECRET}, timeout=30)
    return [json.loads(line) for line in r.content.splitlines()]


def _body(docs: list[dict]) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in docs)


def _unknown_table(docs):
    docs[0]["tables"].append({"name": "audit", "columns": ["id"]})
    return _body(docs)


def _bad_column(docs):
    docs[0]["tables"][0]["columns"].append("evil; drop table users")
    return _body(docs)


def _own_serial(docs):
    docs.insert(1, {"t": "kv", "r": ["serial", "999"]})
    docs[-1]["counts"]["kv"] += 1
    return _body(docs)


def _cut_off(docs):
    return _body(docs[:-1])


def _cut_mid_line(docs):
    return _body(docs[:-1]) + json.dumps(docs[-1]).encode()[:10]


def _wrong_counts(docs):
    docs[-1]["counts"]["users"] += 1
    return _body(docs)


def _tables_mixed(docs):
    kv = docs.pop(next(i for i, d in enumerate(docs) if d.get("t") == "kv"))
    docs.insert(len(docs) - 1, kv)  # a kv row (no foreign keys) after the last table's
    return _body(docs)


def _not_a_scalar(docs):
    users = next(d for d in docs if d.get("t") == "users")
    users["r"][1] = {"$ne": None}
    return _body(docs)


def _more_after_end(docs):
    return _body([*docs, docs[1]])


HOSTILE = {
    "unknown table": (_unknown_table, "not a replicated table"),
    "bad column": (_bad_column, "unknown columns"),
    "own serial": (_own_serial, "own kv rows"),
    "cut off": (_cut_off, "cut off"),
    "cut mid-line": (_cut_mid_line, "cut off"),
    "wrong counts": (_wrong_counts, "counts"),
    "tables mixed": (_tables_mixed, "after those of a later table"),
    "not a scalar": (_not_a_scalar, "not a scalar"),
    "more after the end": (_more_after_end, "after its end line"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_snapshot_leaves_the_replica_empty_and_says_why(primary, tmp_path, case):
    make_body, reason = HOSTILE[case]
    serverdir = tmp_path / "replica"
    with HostilePrimary(make_body(_real(primary))) as hostile:
        done = subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(serverdir), "--port", "0",
                               *replica_args(hostile.url, write_secret(tmp_path), "--replica-start-wait", "2")],
                              capture_output=True, text=True, timeout=120)
        assert any(p.startswith("/+replica/snapshot") for p in hostile.asked)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("devpi server: replica start: snapshot refused") and reason in line, line
    with sqlite3.connect(serverdir / "devpi.sqlite") as conn:
        for table in ("users", "indexes", "files", "changelog", "tokens"):
            assert conn.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
        assert conn.execute("select key, value from kv").fetchall() == [("serial", "-1")]
