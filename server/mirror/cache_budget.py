"""``--mirror-cache-size``: keep the mirrors' cached files within a byte budget.

Past the budget, cached mirror files are evicted least recently used first (by
``mirror_files.last_access``, noted coarsely by store/disk_stats.AccessLog; by when they
were stored if never noted): their rows go, and the blob with them unless some other row
still names it. An evicted file is downloaded again the next time someone asks for it.

What counts against the budget is the blobs only mirror rows name: a blob that is also a
private file's (an upload of the same bytes, a push from the mirror) would stay on disk
whatever the mirror does, so it neither counts nor is ever deleted here. Uploaded files
are never evicted.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, tuple_

from ..store import schema
from ..store.blobstore import BlobStore
from ..store.reachability import collection_lock, is_referenced
from ..store.storage import Storage

log = logging.getLogger("devpi.server.mirror")
BATCH = 500
FRESH = 30.0  # seconds: a file whose blob was (re)written this recently is not evicted this round


def _written_within(blobs: BlobStore, sha256: str, seconds: float, now: float) -> bool:
    try:
        return now - os.stat(blobs.filename(sha256)).st_mtime < seconds
    except FileNotFoundError:
        return False


@dataclass
class EvictReport:
    cache_bytes: int = 0  # before
    budget: int = 0
    evicted: list[tuple[int, str]] = field(default_factory=list)  # (index id, relpath)
    evicted_bytes: int = 0  # of blobs deleted
    skipped: bool = False

    def as_dict(self) -> dict:
        return {"cache_bytes": self.cache_bytes, "budget": self.budget, "evicted": len(self.evicted),
                "evicted_bytes": self.evicted_bytes, "skipped": self.skipped}


def mirror_only_bytes(storage: Storage) -> int:
    """Bytes of the blobs that only mirror rows name (what the budget counts)."""
    f, m = schema.files, schema.mirror_files
    inner = (select(m.c.sha256, func.max(m.c.size).label("size")).group_by(m.c.sha256)
             .where(m.c.sha256.not_in(select(f.c.sha256))).subquery())
    with storage.read() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(inner.c.size), 0))).scalar_one())


def evict(storage: Storage, blobs: BlobStore, budget: int, fresh: float = FRESH, wait: bool = False) -> EvictReport:
    """Evict cached mirror files, least recently used first, until the mirror-only blobs fit
    ``budget`` bytes. Runs under the collection lock (store/reachability.py)."""
    report = EvictReport(budget=budget)
    with collection_lock(blobs, wait) as held:
        if not held:
            report.skipped = True
            return report
        f, m = schema.files, schema.mirror_files
        with storage.read() as conn:
            private = set(conn.execute(select(f.c.sha256)).scalars())
            rows = conn.execute(select(m.c.index_id, m.c.relpath, m.c.sha256, m.c.size)
                                .order_by(func.coalesce(m.c.last_access, m.c.created), m.c.index_id,
                                          m.c.relpath)).all()
        holders: dict[str, int] = {}  # mirror-only blob -> mirror rows naming it
        sizes: dict[str, int] = {}
        for row in rows:
            if row.sha256 not in private:
                holders[row.sha256] = holders.get(row.sha256, 0) + 1
                sizes[row.sha256] = row.size
        total = report.cache_bytes = sum(sizes.values())
        freed: list[str] = []
        now = time.time()
        for row in rows:
            if total <= budget:
                break
            if row.sha256 not in holders:
                continue  # a private file's blob too: evicting the row frees nothing
            if _written_within(blobs, row.sha256, fresh, now):
                continue  # just downloaded (or about to be named again): not this round
            report.evicted.append((row.index_id, row.relpath))
            holders[row.sha256] -= 1
            if holders[row.sha256] == 0:
                total -= sizes[row.sha256]
                freed.append(row.sha256)
        keys = report.evicted
        with storage.cache_write() as conn:
            for i in range(0, len(keys), BATCH):
                conn.execute(delete(m).where(tuple_(m.c.index_id, m.c.relpath).in_(keys[i:i + BATCH])))
        for sha in freed:
            with storage.read() as conn:
                if is_referenced(conn, sha):  # downloaded again, or uploaded, since
                    continue
            if blobs.remove_unless_fresh(sha, fresh):
                report.evicted_bytes += sizes[sha]
    if report.evicted:
        log.info("mirror cache: evicted %d files (%d bytes) to stay within %d bytes",
                 len(report.evicted), report.evicted_bytes, budget)
    return report

