"""Several processes on one database (``--workers N``, or several servers on one
PostgreSQL) each follow every commit and so each apply it to the shared search tables:
they must take turns, and one that comes second must not undo or duplicate the first's."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from devpi.server.store import catalog
from devpi.server.store.storage import Storage
from devpi.web.search import SearchIndex


def _search_index(store: Storage) -> SearchIndex:
    """A search index as one server process has it (its own writer, the shared tables)."""
    si = SearchIndex(SimpleNamespace(storage=store, change_listeners=[]))
    si._prepare()
    si.ready.set()  # what its thread does after preparing; the tests apply batches themselves
    return si


def _release(store: Storage, ixname: str, name: str, version: str) -> tuple[int, list[dict]]:
    with store.write("test") as tx:
        ix = catalog.get_index(tx.conn, "alice", ixname)
        project = catalog.ensure_project(tx, ix, name, name)
        catalog.put_release(tx, ix, project, version, {"name": name, "version": version,
                                                         "summary": f"{name} does things"})
        tx.record("release", index=ix.fullname, project=name, version=version)
    return tx.serial, tx.changes


def _apply_after(si: SearchIndex, start: threading.Barrier, batch: list, failures: list) -> None:
    try:
        start.wait(10)
        si._apply(batch)
    except BaseException as e:  # reported by the test
        failures.append(e)


def test_two_processes_apply_the_same_commits_at_once(store):
    with store.write("test") as tx:
        catalog.create_user(tx, "alice", "", {})
        catalog.create_index(tx, "alice", "dev", {"type": "stage", "bases": []})
    one, two = _search_index(store), _search_index(store)
    failures: list[BaseException] = []
    for round_ in range(30):
        batch = [_release(store, "dev", f"pkg{round_}", "1.0"), _release(store, "dev", "common", f"{round_}.0")]
        start = threading.Barrier(2)

        threads = [threading.Thread(target=_apply_after, args=(si, start, batch, failures)) for si in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not failures, failures[0]
    serial = store.current_serial
    assert one.serial == two.serial == serial
    hits, total = one.search("pkg7", {"alice/dev"})
    assert [h.project for h in hits] == ["pkg7"] and total == 1
    projects = one.index_projects("alice/dev")
    assert projects is not None
    names = sorted(p[0] for p in projects)
    assert names == sorted(["common"] + [f"pkg{i}" for i in range(30)])  # each once
    assert dict((p[0], p[2]) for p in projects)["common"] == "29.0"


def test_a_batch_another_process_applied_is_not_applied_again(store):
    with store.write("test") as tx:
        catalog.create_user(tx, "alice", "", {})
        catalog.create_index(tx, "alice", "dev", {"type": "stage", "bases": []})
    one, two = _search_index(store), _search_index(store)
    batch = [_release(store, "dev", "pkg", "1.0")]
    one._apply(batch)
    writes: list[str] = []
    two._delete = lambda conn, i, p: writes.append(p)  # type: ignore[method-assign]
    two._apply(batch)
    assert writes == [] and two.serial == batch[0][0]
    assert [p[0] for p in two.index_projects("alice/dev") or []] == ["pkg"]
