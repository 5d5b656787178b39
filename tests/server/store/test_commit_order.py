"""Commits reach the listeners (caches, the search index) once each and in serial order,
whichever of the committing threads gets there first."""
from __future__ import annotations

import threading
import time

from devpi.server.store import storage as storage_module
from devpi.server.store.storage import Storage


def _commit(store: Storage, name: str) -> None:
    with store.write("test") as tx:
        tx.record("user", user=name)


def _two_commits(store: Storage, first_thread_announces: bool) -> list[int]:
    """Commit N in one thread whose announcement is late (or never comes), then N+1 in
    another: what the listeners were told."""
    seen: list[int] = []
    store.add_listener(lambda serial, changes: seen.append(serial))
    first = store.current_serial + 1
    real = store._dispatch
    committed = threading.Event()

    def late(entries):
        if entries[0][0] == first:
            committed.set()
            if not first_thread_announces:
                return  # the thread died between its commit and its announcement
            time.sleep(0.5)
        real(entries)

    store._dispatch = late
    one = threading.Thread(target=_commit, args=(store, "a"))
    one.start()
    assert committed.wait(10)
    _commit(store, "b")  # serial N+1, announced by this thread while N's is still on its way
    one.join()
    assert store.current_serial == first + 1
    return [s for s in seen if s >= first]


def test_a_late_announcement_keeps_the_order(store):
    assert _two_commits(store, first_thread_announces=True) == [store.current_serial - 1, store.current_serial]


def test_an_announcement_that_never_comes_is_read_from_the_changelog(store, monkeypatch, caplog):
    monkeypatch.setattr(storage_module, "ANNOUNCE_WAIT", 0.3)
    caplog.set_level("DEBUG", logger="devpi.server.storage")
    assert _two_commits(store, first_thread_announces=False) == [store.current_serial - 1, store.current_serial]
    assert "announced serials" in caplog.text


def test_many_writers_lose_no_announcement(store):
    seen: list[int] = []
    store.add_listener(lambda serial, changes: seen.append(serial))
    start = store.current_serial

    def writer(n: int) -> None:
        for i in range(40):
            _commit(store, f"w{n}-{i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == list(range(start + 1, start + 1 + 8 * 40))
