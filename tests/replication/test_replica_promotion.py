"""Promoting a replica to primary when the primary is lost (doc/replication.md, "Promotion"):
stop the replica, start it without --primary-url. Real processes, SQLite and PostgreSQL:
writes of every kind work on the promoted server with the old logins and tokens, its
serials go on from the replica's, a new replica follows it, and the old primary started
as its replica with serials the promoted one never had is refused, not forked."""
from __future__ import annotations

import pytest
import requests
from support.pipinstall import installed, pip_install
from support.populate import SIMPLE_JSON, upload_wheel
from support.replication import primary_args, replica_args, serial_of, status, wait_until, write_secret


def _token(s, auth, allowed: list[str]) -> str:
    r = s.api("POST", f"/{auth[0]}/+token-create", json={"allowed": allowed}, auth=auth)
    assert r.status_code == 200, r.text
    return r.json()["result"]["token"]


def _same_page(a, b, path: str) -> None:
    for accept in ("text/html", SIMPLE_JSON):
        ra = requests.get(a.url + path, headers={"Accept": accept}, timeout=30)
        rb = requests.get(b.url + path, headers={"Accept": accept}, timeout=30)
        assert ra.status_code == rb.status_code == 200 and ra.content == rb.content, path


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_promoted_replica_takes_writes_feeds_replicas_and_refuses_the_old_primary(
        make_server, tmp_path, request, engine):
    def storage():
        return request.getfixturevalue("pg_cluster").new_database() if engine == "postgresql" else None

    secret = write_secret(tmp_path)
    primary_db, replica_db = storage(), storage()
    primary = make_server(storage=primary_db, args=primary_args(secret))
    replica = make_server(storage=replica_db, args=replica_args(primary.url, secret))
    alice = primary.create_user("alice", "alice-pw")
    primary.create_user("bob", "bob-pw")
    primary.create_index(alice, "dev", bases=[])
    upload_wheel(primary, "alice/dev", "first-lib", "1.0", alice)
    upload_wheel(primary, "alice/dev", "first-lib", "1.1", alice)
    upload_token = _token(primary, alice, ["upload"])
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
    wait_until(lambda: status(replica)["replication"]["files"]["pending"] == 0, what="the files arriving")
    replica_serial = serial_of(replica)

    # the replica goes down first; the primary takes one more upload no replica ever sees, then is lost
    replica.stop()
    upload_wheel(primary, "alice/dev", "lost-lib", "1.0", alice)
    assert serial_of(primary) == replica_serial + 1
    primary.stop()

    # promotion: the same server dir and database, started without --primary-url
    replica.args = primary_args(secret)
    promoted = replica.start()
    assert status(promoted)["replication"] == {"role": "primary", "feed": True}
    assert serial_of(promoted) == replica_serial
    assert requests.get(promoted.url + "/alice/dev/+simple/lost-lib/", timeout=30).status_code == 404
    # logins and tokens made on the old primary hold; every kind of write works, serials go on
    user, login = promoted.login("alice", "alice-pw")
    auth = (user, login)
    upload_wheel(promoted, "alice/dev", "first-lib", "2.0", ("__token__", upload_token))
    assert serial_of(promoted) > replica_serial
    upload_wheel(promoted, "alice/dev", "new-lib", "1.0", auth)  # a new project, release and file (new ids)
    promoted.create_user("carol", "carol-pw")
    promoted.create_index(auth, "staging", bases=["alice/dev"])
    carol = promoted.login("carol", "carol-pw")
    promoted.create_index(carol, "dev", bases=[])
    carol_token = _token(promoted, carol, ["upload"])
    upload_wheel(promoted, "carol/dev", "carol-lib", "0.1", ("__token__", carol_token))
    result = pip_install(promoted.url + "/alice/staging/+simple/", tmp_path / "t1", "new-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "t1") == {"new-lib": "1.0"}

    # a new replica follows the promoted server from its first serial
    second = make_server(storage=storage(), args=replica_args(promoted.url, secret))
    wait_until(lambda: serial_of(second) >= serial_of(promoted), what="the new replica catching up")
    for path in ("/alice/dev/+simple/first-lib/", "/alice/dev/+simple/new-lib/", "/carol/dev/+simple/carol-lib/",
                 "/alice/staging/+simple/new-lib/"):
        _same_page(promoted, second, path)
    result = pip_install(second.url + "/carol/dev/+simple/", tmp_path / "t2", "carol-lib")
    assert result.returncode == 0, result.stdout + result.stderr

    # the old primary, started as a replica of the promoted one, has a serial the promoted one
    # wrote differently: it is refused and says why, and keeps its own state (no fork)
    primary.args = replica_args(promoted.url, secret)
    old = primary.start()
    wait_until(lambda: status(old)["replication"]["last_error"], what="the old primary's refusal")
    rep = status(old)["replication"]
    assert "history" in rep["last_error"] and "409" in rep["last_error"], rep["last_error"]
    assert serial_of(old) == replica_serial + 1
    assert requests.get(old.url + "/alice/dev/+simple/lost-lib/", timeout=30).status_code == 200
    assert requests.get(old.url + "/carol/dev/+simple/", timeout=30).status_code == 404
    # a write on the promoted one changes nothing of that
    upload_wheel(promoted, "alice/dev", "later-lib", "1.0", auth)
    wait_until(lambda: serial_of(second) >= serial_of(promoted), what="the new replica following")
    assert serial_of(old) == replica_serial + 1
