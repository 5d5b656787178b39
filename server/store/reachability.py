"""Which blobs rows still name, and deleting the others once they stayed unnamed long enough.

A blob is reachable while a ``files`` row names it (its bytes or its wheel's core metadata)
or a ``mirror_files`` row does. Everything else in the store is garbage, but not at once:

- a write transaction lands its blob before the row naming it commits (blobstore.py);
- an export reads rows at one serial and copies their blobs afterwards, while later
  commits may delete those rows;
- a writer may land bytes the store already holds (an upload after a delete), and
  re-uses the file on disk.

So a collection only *notes* an unreferenced blob (``blob_gc_candidates``: since when) and
deletes it at a later collection, once it has been unreferenced for ``grace`` seconds and
its file is also older than that; ``BlobStore.remove_unless_fresh`` covers the last case.
One collection at a time per server dir (a lock file beside the blobs): the server's
background task in each process and ``devpi gc`` take turns, and a killed one leaves
nothing to undo (every step is a rename, an unlink or a committed row).
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import delete, select, union
from sqlalchemy.engine import Connection

from . import schema
from .blobstore import BlobStore
from .storage import Storage

log = logging.getLogger("devpi.server.gc")
LOCK_FILE = "gc.lock"
DEFAULT_GRACE = 6 * 3600.0  # seconds: longer than any export or write transaction takes
BATCH = 500


def referenced(conn: Connection) -> set[str]:
    """Every sha256 some row names (one query; ~100 bytes of memory per blob)."""
    f, m = schema.files, schema.mirror_files
    q = union(select(f.c.sha256), select(f.c.core_metadata_sha256).where(f.c.core_metadata_sha256.is_not(None)),
              select(m.c.sha256))
    return set(conn.execute(q).scalars())


def is_referenced(conn: Connection, sha256: str) -> bool:
    f, m = schema.files, schema.mirror_files
    for q in (select(f.c.id).where(f.c.sha256 == sha256).limit(1),
              select(f.c.id).where(f.c.core_metadata_sha256 == sha256).limit(1),
              select(m.c.index_id).where(m.c.sha256 == sha256).limit(1)):
        if conn.execute(q).first() is not None:
            return True
    return False


@contextmanager
def collection_lock(blobs: BlobStore, wait: bool = False) -> Iterator[bool]:
    """Hold the server dir's collection lock; yields False (without it) if another process
    holds it and ``wait`` is False."""
    fd = os.open(blobs.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # gives the lock back


@dataclass
class GcReport:
    blobs: int = 0  # blobs in the store before
    bytes: int = 0
    unreferenced: int = 0  # of them
    noted: int = 0  # newly noted as unreferenced (deleted by a later run after the grace period)
    deleted: int = 0
    deleted_bytes: int = 0
    kept_young: int = 0  # unreferenced but within the grace period
    odd: list[str] = field(default_factory=list)  # entries that are not blobs: left alone
    skipped: bool = False  # another collection was running

    def as_dict(self) -> dict:
        return {k: (v[:20] if isinstance(v, list) else v) for k, v in self.__dict__.items()}


def collect(storage: Storage, blobs: BlobStore, grace: float = DEFAULT_GRACE, wait: bool = False,
            now: float | None = None) -> GcReport:
    """One collection: note the unreferenced blobs, delete those unreferenced for ``grace``."""
    report = GcReport()
    with collection_lock(blobs, wait) as held:
        if not held:
            report.skipped = True
            return report
        now = time.time() if now is None else now
        on_disk: dict[str, tuple[int, float]] = {}
        for entry in blobs.scan():
            if entry.odd:
                report.odd.append(entry.path)
                continue
            on_disk[entry.sha256] = (entry.size, entry.mtime)
            report.blobs += 1
            report.bytes += entry.size
        # rows are read after the scan: a blob landed after it is not on the list at all
        cand = schema.blob_gc_candidates
        with storage.read() as conn:
            named = referenced(conn)
            noted = dict(conn.execute(select(cand.c.sha256, cand.c.since)).all())
        unreferenced = [sha for sha in on_disk if sha not in named]
        report.unreferenced = len(unreferenced)
        # noted ``grace`` ago (or now, with a grace of 0) and its file as old
        ripe = [sha for sha in unreferenced if now - noted.get(sha, now) >= grace
                and now - on_disk[sha][1] >= grace]
        ripe_now = set(ripe)
        new = [sha for sha in unreferenced if sha not in noted and sha not in ripe_now]
        gone = [sha for sha in noted if sha in named or sha not in on_disk]
        report.kept_young = len(unreferenced) - len(ripe)
        report.noted = len(new)
        for i in range(0, len(ripe), BATCH):
            chunk = ripe[i:i + BATCH]
            with storage.read() as conn:  # named again since the read above? then it stays
                still = [sha for sha in chunk if not is_referenced(conn, sha)]
            done = []
            for sha in still:
                if blobs.remove_unless_fresh(sha, grace, now=time.time()):
                    report.deleted += 1
                    report.deleted_bytes += on_disk[sha][0]
                done.append(sha)
            gone.extend(done)
        with storage.cache_write() as conn:
            for i in range(0, len(gone), BATCH):
                conn.execute(delete(cand).where(cand.c.sha256.in_(gone[i:i + BATCH])))
            if new:
                conn.execute(cand.insert(), [{"sha256": sha, "since": now} for sha in new])
    if report.deleted or report.odd:
        log.info("gc: deleted %d unreferenced blobs (%d bytes); %d odd entries left alone",
                 report.deleted, report.deleted_bytes, len(report.odd))
    return report
