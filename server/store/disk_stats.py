"""Disk figures and download recency, kept on the core (``core.disk``) for /+status, the web
UI and the metrics: what the garbage collector and the mirror cache budget did and found.

``DiskStats`` holds plain numbers, updated by the disk keeper (runtime/disk_keeper.py) and
``devpi gc``; reading them costs nothing. ``AccessLog`` notes when cached mirror files are
asked for without a database write per download (see its docstring).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, select, update

from . import schema
from .storage import Storage

ACCESS_GRAIN = 600.0  # seconds: a file asked for again within this is not noted again
ACCESS_MEMORY = 200_000  # (index, file) pairs remembered for the grain; past it the memory starts over
PER_INDEX_FOR = 60.0  # seconds the per-index sums are reused (one GROUP BY over the file tables)

_touch = (update(schema.mirror_files)
          .where(schema.mirror_files.c.index_id == bindparam("ix"), schema.mirror_files.c.relpath == bindparam("rp"))
          .values(last_access=bindparam("at")))


class AccessLog:
    """When each cached mirror file was last downloaded, to the nearest ``ACCESS_GRAIN``.

    A download notes (index, file, time) in a dict: no lock wait, no I/O. A file already
    noted within the grain is not noted again, so a hot wheel costs one row update per ten
    minutes and process, not one per download. The disk keeper writes what was noted in
    one batch (``flush``, an ``executemany`` of UPDATEs outside the changelog) every few
    seconds. A crash loses at most the last batch: eviction then thinks those files were
    used a little earlier than they were. The eviction order is least recently used to
    within the grain, which is all a cache budget needs."""

    def __init__(self) -> None:
        self._pending: dict[tuple[int, str], float] = {}
        self._recent: dict[tuple[int, str], float] = {}
        self._lock = threading.Lock()

    def touch(self, index_id: int, relpath: str) -> None:
        key = (index_id, relpath)
        now = time.time()
        last = self._recent.get(key)
        if last is not None and now - last < ACCESS_GRAIN:
            return
        if len(self._recent) >= ACCESS_MEMORY:
            self._recent = {}
        self._recent[key] = now
        self._pending[key] = now  # dict assignment is atomic under the GIL; flush swaps it out

    def flush(self, storage: Storage) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        params = [{"ix": ix, "rp": rp, "at": at} for (ix, rp), at in sorted(pending.items())]
        with storage.cache_write() as conn:
            conn.execute(_touch, params)
        return len(params)


@dataclass
class DiskStats:
    """Counters and gauges (bytes, counts), for /+status and the metrics."""

    blob_store_bytes: int = 0  # all blobs, as of the last collection or fsck
    blob_count: int = 0
    mirror_cache_bytes: int = 0  # blobs only mirror rows name (eviction can free them)
    mirror_cache_budget: int | None = None  # --mirror-cache-size
    evictions_total: int = 0  # mirror files evicted by this process since start
    evicted_bytes_total: int = 0
    gc_runs_total: int = 0
    gc_deleted_total: int = 0  # blobs deleted by this process's collections
    gc_deleted_bytes_total: int = 0
    last_gc: float | None = None  # unix time
    access: AccessLog = field(default_factory=AccessLog)
    _per_index: tuple[float, dict[int, dict[str, int]]] = (0.0, {})

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k != "access"}

    def per_index(self, storage: Storage) -> dict[int, dict[str, int]]:
        """index id -> {"bytes", "files"}: the sizes of its files (uploads, doc zips, tox
        results) or, for a mirror, of its cached files. Reused for ``PER_INDEX_FOR``."""
        at, sums = self._per_index
        if time.monotonic() - at < PER_INDEX_FOR:
            return sums
        f, m = schema.files, schema.mirror_files
        sums = {}
        with storage.read() as conn:
            for table in (f, m):
                q = select(table.c.index_id, func.count(), func.coalesce(func.sum(table.c.size), 0)).group_by(
                    table.c.index_id)
                for ix, n, total in conn.execute(q):
                    entry = sums.setdefault(ix, {"bytes": 0, "files": 0})
                    entry["bytes"] += int(total)
                    entry["files"] += int(n)
        self._per_index = (time.monotonic(), sums)
        return sums
