"""The mirror's batched cache writes: one write that cannot land loses no other."""
from __future__ import annotations

import logging

from devpi.server.mirror import store as mirror_store
from devpi.server.store import catalog
from devpi.server.store.migrate import ensure_schema
from devpi.server.store.storage import Storage


def test_a_write_for_a_deleted_index_does_not_take_its_batch_with_it(tmp_path, caplog):
    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_schema(storage)
    with storage.write() as tx:
        catalog.create_user(tx, "root", "x", {})
        catalog.create_index(tx, "root", "gone", {"type": "mirror"})
        catalog.create_index(tx, "root", "kept", {"type": "mirror"})
    with storage.read() as conn:
        gone, kept = catalog.get_index(conn, "root", "gone"), catalog.get_index(conn, "root", "kept")
    with storage.write() as tx:
        catalog.delete_index(tx, gone)  # after its page was fetched, before the cache write lands

    caplog.set_level(logging.INFO, logger="devpi.server.mirror")
    for ix in (gone, kept):  # queued together: one batch
        mirror_store.MirrorStore(storage, ix.id).save_page("pkg", "http://upstream.example.invalid/pkg/", [],
                                                           None, None, None, 1.0)
    mirror_store.flush_all()

    assert mirror_store.MirrorStore(storage, kept.id).load_page("pkg") is not None
    assert mirror_store.MirrorStore(storage, gone.id).load_page("pkg") is None
    assert "dropped a cache update for an index deleted meanwhile" in caplog.text
    assert "could not store" not in caplog.text


def test_a_batch_changes_rows_in_one_order_whatever_the_queue_order(tmp_path):
    """Every process's batch takes its row locks in the same order (by table, index, row),
    so two batches with rows in common on PostgreSQL wait for each other instead of
    deadlocking; writes to one row keep their queue order (the sort is stable)."""
    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upsert_page = mirror_store._upsert(storage, mirror_store.pages)
    upsert_file = mirror_store._upsert(storage, mirror_store.files)
    touch = mirror_store._touch_page
    queued = [
        (2, upsert_file, {"relpath": "+f/b/x.whl"}),
        (1, upsert_page, {"project": "zeta"}),
        (1, touch, {"key_project": "alpha", "new_fetched": 2.0}),
        (2, upsert_page, {"project": "alpha"}),
        (1, upsert_page, {"project": "alpha", "fetched": 1.0}),
        (1, upsert_file, {"relpath": "+f/a/y.whl"}),
    ]
    order = [params for _, many in mirror_store._runs(queued) for params in many]
    assert order == [
        {"key_project": "alpha", "new_fetched": 2.0},  # index 1, alpha: the touch was queued first
        {"project": "alpha", "fetched": 1.0},
        {"project": "zeta"},
        {"project": "alpha"},  # index 2
        {"relpath": "+f/a/y.whl"},  # then files
        {"relpath": "+f/b/x.whl"},
    ]
    distinct_rows = [w for w in queued if w[2] is not queued[2][2]]  # one write per row
    forwards = [p for _, many in mirror_store._runs(distinct_rows) for p in many]
    backwards = [p for _, many in mirror_store._runs(distinct_rows[::-1]) for p in many]
    assert forwards == backwards


def _synchronous(conn, is_sqlite: bool) -> str:
    if is_sqlite:
        return {0: "off", 1: "normal", 2: "full", 3: "extra"}[conn.exec_driver_sql("PRAGMA synchronous").scalar()]
    return conn.exec_driver_sql("SHOW synchronous_commit").scalar()


def test_cache_writes_do_not_wait_for_the_disk_and_leave_other_writes_waiting(tmp_path, storage_url):
    """A cache commit may be undone by a power loss (a cached copy of upstream); an upload's
    may not. The relaxed setting must hold inside the cache transaction only: the pooled
    connection goes on to serve every other write with the full wait."""
    storage = Storage(storage_url or f"sqlite:///{tmp_path / 'db.sqlite'}")
    with storage.engine.connect() as conn:
        assert _synchronous(conn, storage.is_sqlite) in ("full", "on")
    for _ in range(2):  # the same pooled connection again: restored after the first
        with storage.cache_write() as conn:
            assert _synchronous(conn, storage.is_sqlite) in ("normal", "off")
            raw = conn.connection.driver_connection
        if storage.is_sqlite:
            assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    with storage.engine.connect() as conn, conn.begin():
        assert _synchronous(conn, storage.is_sqlite) in ("full", "on")
    storage.engine.dispose()


def test_an_index_made_after_a_delete_never_gets_the_deleted_ones_id(tmp_path, storage_url, caplog):
    """A cache write queued for a mirror that is then deleted must not land on an index
    created afterwards: the new one gets an id no index had before (SQLite would give the
    newest deleted row's id out again)."""
    storage = Storage(storage_url or f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_schema(storage)
    with storage.write() as tx:
        catalog.create_user(tx, "root", "x", {})
        catalog.create_index(tx, "root", "kept", {"type": "mirror"})
        old = catalog.create_index(tx, "root", "phoenix", {"type": "mirror"})
    with storage.write() as tx:
        catalog.delete_index(tx, old)
    with storage.write() as tx:
        new = catalog.create_index(tx, "root", "phoenix", {"type": "mirror"})
    assert new.id > old.id

    caplog.set_level(logging.INFO, logger="devpi.server.mirror")
    mirror_store.MirrorStore(storage, old.id).save_page("pkg", "http://127.0.0.1:9/simple/pkg/", [],
                                                        None, None, None, 1.0)  # fetched before the delete
    mirror_store.flush_all()
    assert mirror_store.MirrorStore(storage, new.id).load_page("pkg") is None
    assert "dropped a cache update for an index deleted meanwhile" in caplog.text

    with storage.write() as tx:  # the count survives the newest index going, twice over
        catalog.delete_index(tx, new)
    with storage.write() as tx:
        again = catalog.create_index(tx, "root", "phoenix", {"type": "mirror"})
    assert again.id > new.id
    storage.engine.dispose()
