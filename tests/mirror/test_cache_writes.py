"""The mirror's batched cache writes: one write that cannot land loses no other."""
from __future__ import annotations

import logging

from devpi.server import catalog, mirror_store
from devpi.server.migrate import ensure_schema
from devpi.server.storage import Storage


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
