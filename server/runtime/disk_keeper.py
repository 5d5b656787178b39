"""The server's disk housekeeping thread: download times, the mirror cache budget, and the
collection of unreferenced blobs.

Every ``--disk-check-interval`` seconds it writes the download times noted since the last
round (one batch) and, with ``--mirror-cache-size``, evicts what lies beyond the budget
(one SUM query when within it). Every ``--gc-interval`` seconds it collects unreferenced
blobs (store/reachability.py: a directory scan and one query). Each server process of a
server dir runs one; the collection lock in the blob directory lets one of them work at
a time and the others skip that round, on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core import Core
    from ..store.reachability import GcReport

log = logging.getLogger("devpi.server.disk")
FIRST_GC_AFTER = 60.0  # seconds after start: the start-up work goes first


class DiskKeeper:
    def __init__(self, core: Core):
        self.core = core
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="disk-keeper", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        config = self.core.config
        # processes sharing a server dir spread out instead of all scanning at once
        next_gc = time.monotonic() + min(FIRST_GC_AFTER, config.gc_interval) * (0.5 + random.random())
        while True:
            time.sleep(config.disk_check_interval)
            try:
                self.check_budget()
            except Exception:
                log.exception("disk: the mirror cache check failed")
            if config.gc_interval and time.monotonic() >= next_gc:
                next_gc = time.monotonic() + config.gc_interval
                try:
                    self.collect()
                except Exception:
                    log.exception("disk: the blob collection failed")

    def check_budget(self) -> None:
        from ..mirror.cache_budget import evict, mirror_only_bytes

        core, disk = self.core, self.core.disk
        disk.access.flush(core.storage)
        disk.mirror_cache_bytes = mirror_only_bytes(core.storage)
        budget = core.config.mirror_cache_size
        if budget is None or disk.mirror_cache_bytes <= budget:
            return
        report = evict(core.storage, core.blobs, budget)
        if report.skipped:
            return
        disk.evictions_total += len(report.evicted)
        disk.evicted_bytes_total += report.evicted_bytes
        disk.mirror_cache_bytes = mirror_only_bytes(core.storage)
        forgetters = {repo.index.id: repo.forget_file for repo in core.loaded_repositories()
                      if hasattr(repo, "forget_file") and hasattr(repo, "index")}
        for index_id, relpath in report.evicted:  # this process's memory of them
            forget = forgetters.get(index_id)
            if forget is not None:
                forget(relpath)

    def collect(self) -> None:
        from ..store.reachability import collect

        core = self.core
        report = collect(core.storage, core.blobs, core.config.gc_grace)
        if report.skipped:
            return
        record_collection(core, report)


def record_collection(core: Core, report: GcReport) -> None:
    disk = core.disk
    disk.gc_runs_total += 1
    disk.gc_deleted_total += report.deleted
    disk.gc_deleted_bytes_total += report.deleted_bytes
    disk.blob_count = report.blobs - report.deleted
    disk.blob_store_bytes = report.bytes - report.deleted_bytes
    disk.last_gc = time.time()
