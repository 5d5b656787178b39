"""The row journal (store/row_journal.py) describes every serial completely.

A server is driven through its HTTP API through everything that writes (users, indexes,
uploads, docs, test runs, yanks, tokens, push, deletes of files, versions, projects,
indexes and users); then every serial's journal is applied, in order, to an empty
database. Every replicated table must then hold exactly what the server's does: a write
the journal missed would be a row a replica never gets.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from devpi.server.store import row_journal, schema
from devpi.server.store.migrate import ensure_schema
from devpi.server.store.storage import Storage
from sqlalchemy import insert, select
from support.populate import SIMPLE_JSON, get, populate, upload_wheel


def _drive(s, tmp: Path) -> None:
    state = populate(s, tmp)
    alice = state["auth"]
    # a test run with events, finished, then copied by push along with its file
    href = s.api("GET", "/alice/dev/pkg-a").json()["result"]["1.0"]["+links"][0]["href"]
    run = s.api("POST", "/alice/dev/+testruns", json={"file": href, "host": "h", "platform": "linux",
                                                      "python": "3.12.1"}, auth=alice).json()["result"]
    r = s.api("POST", f"/alice/dev/+testruns/{run['id']}/events", json={"key": run["key"], "events": [
        {"env": "py", "nodeid": f"t.py::t{i}", "outcome": "passed", "duration": 0.1} for i in range(3)]})
    assert r.status_code == 200, r.text
    r = s.api("POST", f"/alice/dev/+testruns/{run['id']}/finish", json={"key": run["key"], "exitcode": 0})
    assert r.status_code == 200, r.text
    s.create_index(alice, "prod", bases=["alice/dev"])
    r = s.api("PUSH", "/alice/dev", json={"name": "pkg-a", "version": "1.0", "targetindex": "alice/prod"},
              auth=alice)
    assert r.status_code == 200, r.text
    # index and user changes, a second user, a token revoked, a password changed
    r = s.api("PATCH", "/alice/dev", json=["acl_upload+=bob", "description=the dev stage"], auth=alice)
    assert r.status_code == 200, r.text
    bob = s.create_user("bob", "bob-pw")
    s.create_index(bob, "tmp")
    upload_wheel(s, "bob/tmp", "bobs-lib", "1.0", bob)
    token = s.api("POST", "/bob/+token-create", json={"allowed": ["upload"]}, auth=bob).json()["result"]
    r = s.api("DELETE", f"/bob/+tokens/{token['id']}", auth=bob)
    assert r.status_code == 200, r.text
    r = s.api("PATCH", "/alice", json={"password": "new-pw"}, auth=alice)
    assert r.status_code == 200, r.text
    alice = ("alice", "new-pw")
    # deletes: a version, a project, an index, a user with what they held
    r = s.api("POST", "/alice/dev/pkg-a/1.1/+yank", json={"undo": True}, auth=alice)
    r = s.api("DELETE", "/alice/dev/other-lib/0.1", auth=alice)
    assert r.status_code == 200, r.text
    upload_wheel(s, "alice/dev", "short-lived", "1.0", alice)
    r = s.api("DELETE", "/alice/dev/short-lived", auth=alice)
    assert r.status_code == 200, r.text
    s.create_index(alice, "gone")
    upload_wheel(s, "alice/gone", "pkg-a", "9.0", alice)
    assert s.api("DELETE", "/alice/gone", auth=alice).status_code in (200, 201)
    assert s.api("DELETE", "/bob", auth=("root", "root")).status_code == 200
    assert get(s, "/alice/prod/+simple/pkg-a/", SIMPLE_JSON).status_code == 200


def _table_rows(conn, table) -> list[tuple]:
    rows = [tuple(r) for r in conn.execute(select(table))]
    if table.name == "kv":
        rows = [r for r in rows if r[0] not in row_journal.LOCAL_KV]
    return sorted(rows, key=repr)


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_replaying_the_journal_gives_every_replicated_row(make_server, storage_url, tmp_path, request, target):
    s = make_server(storage=storage_url)
    _drive(s, tmp_path)
    s.stop()
    source = Storage(storage_url or f"sqlite:///{s.serverdir / 'devpi.sqlite'}")
    target_url = (request.getfixturevalue("pg_cluster").new_database() if target == "postgresql"
                  else f"sqlite:///{tmp_path / 'replica.sqlite'}")
    replica = Storage(target_url)
    ensure_schema(replica)
    try:
        with source.read() as conn:
            serials = [r.serial for r in conn.execute(select(schema.changelog.c.serial).order_by("serial"))]
            journal = {r.serial: json.loads(r.rows) for r in conn.execute(select(schema.replication_rows))}
        assert serials and sorted(journal) == serials  # every serial, from the very first, has its rows
        for serial in serials:
            with replica.engine.connect() as conn, conn.begin():
                row_journal.apply(conn, journal[serial])
                conn.execute(insert(schema.changelog).values(serial=serial, created=0.0, changes="[]"))
        with source.read() as a, replica.read() as b:
            for name in row_journal.REPLICATED:
                table = schema.metadata.tables[name]
                assert _table_rows(a, table) == _table_rows(b, table), name
            assert _table_rows(a, schema.users)  # not vacuous
            assert len(_table_rows(a, schema.testrun_events)) >= 6  # the run and its copy
    finally:
        source.close()
        replica.close()


def test_a_write_with_rows_but_no_changelog_entry_is_refused(tmp_path):
    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_schema(storage)
    storage.init_serial()
    try:
        with pytest.raises(row_journal.JournalError, match="without saying so in the changelog"):
            with storage.write("test") as tx:
                tx.conn.execute(insert(schema.users).values(name="ghost", pwhash="", config="{}",
                                                            created="", modified=""))
        with storage.read() as conn:
            assert conn.execute(select(schema.users)).all() == []  # rolled back
    finally:
        storage.close()


def test_rows_the_journal_cannot_describe_are_refused(tmp_path):
    from sqlalchemy import bindparam, update

    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_schema(storage)
    storage.init_serial()
    try:
        with pytest.raises(row_journal.JournalError, match="bound parameters"):
            with storage.write("test") as tx:
                tx.conn.execute(update(schema.users).where(schema.users.c.name == bindparam("n"))
                                .values(pwhash="x"), [{"n": "a"}, {"n": "b"}])
                tx.record("user", user="a")
    finally:
        storage.close()


def test_apply_refuses_unknown_tables_and_columns(tmp_path):
    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_schema(storage)
    try:
        for images in ([{"t": "changelog", "k": [1], "row": {"serial": 1}}],
                       [{"t": "users", "k": ["x"], "row": {"name": "x", "evil": 1}}],
                       [{"t": "users", "k": ["x", "y"]}]):
            with storage.engine.connect() as conn, conn.begin():
                with pytest.raises(row_journal.JournalError):
                    row_journal.apply(conn, images)
    finally:
        storage.close()


def test_a_replicas_storage_refuses_local_writes_but_takes_replicated_serials(store):
    """A replica's serials are its primary's: a local write (a sweeper, a plugin) would fork
    them, so write() refuses while apply_replicated() goes on."""
    import pytest
    from devpi.server.store.storage import ReadOnlyStorage

    before = store.current_serial
    store.read_only_reason = "this server is a replica of http://127.0.0.1:9"
    with pytest.raises(ReadOnlyStorage, match="replica of http://127.0.0.1:9"):
        with store.write("root") as tx:
            tx.record("user", user="x")
    assert store.current_serial == before
    store.apply_replicated(before + 1, 1.0, "root", [{"kind": "user", "user": "x"}], [])
    assert store.current_serial == before + 1
