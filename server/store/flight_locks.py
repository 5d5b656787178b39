"""Locks across processes for single-flight of upstream fetches (mirror pages and files).

Within one process ``mirror/singleflight.py`` makes concurrent requests for one key share
one call. Several processes on one server dir or database (``devpi server --workers N``,
or several servers on one PostgreSQL database) would still each fetch once: the process
leading a fetch therefore also takes this lock for its key, and a process that had to wait
for it reads what the winner stored (the row is committed before the lock is let go)
instead of asking upstream again.

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a 64-bit hash of the
  key, held on a connection of a small pool of its own (at most 32), so held locks never
  take the connections requests need; a fetch finding none free goes on without the lock.
  Works across hosts.
- SQLite (one host): ``flock`` on one of ``SLOTS`` files in ``<serverdir>/locks``, chosen
  by a hash of the key. The number of files is fixed whatever the keys (many distinct
  project names cannot fill the disk or the file table); two keys sharing a slot only wait
  for each other, within the bound below.

Every wait is bounded: a caller that does not get the lock in time gets ``None`` and
fetches itself (one more upstream request, never an error or a hang). A lock is only an
optimisation; correctness never depends on it.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("devpi.server.flight_locks")
SLOTS = 1024  # lock files in <serverdir>/locks (SQLite): empty files, two unrelated keys rarely share one
POLL = 0.05  # seconds between tries while another process holds the lock
PG_POOL = 4  # connections kept for held locks (PostgreSQL) ...
PG_OVERFLOW = 28  # ... and at most this many more while many fetches run at once; past that
PG_POOL_WAIT = 0.2  # seconds a fetch waits for one before going on without the lock


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass
class HeldLock:
    """A lock this process holds for one key; ``waited``: another process held it first
    (so what it fetched should be looked for before fetching again)."""

    waited: bool
    _release: Any = field(repr=False)
    _done: bool = field(default=False, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def release(self) -> None:
        with self._guard:
            if self._done:
                return
            self._done = True
        try:
            self._release()
        except Exception:
            log.warning("could not release a fetch lock", exc_info=True)


class FlightLocks:
    """Try-lock with a bounded wait, per key, across processes."""

    def __init__(self, storage: Any, serverdir: Path, enabled: bool = True):
        self._storage = storage
        self._enabled = enabled
        self._dir = serverdir / "locks"
        self._engine: Any = None
        self._engine_lock = threading.Lock()

    def acquire(self, key: str, timeout: float,
                abandon: Callable[[], bool] = lambda: False) -> HeldLock | None:
        """The lock for ``key``, waited for at most ``timeout`` seconds; None if it was not
        had in time (or locks cannot be taken here: the caller then goes on without), or
        once ``abandon()`` says the wait is no longer needed (checked between tries)."""
        if not self._enabled:
            return None
        try:
            if self._storage.is_sqlite:
                return self._acquire_file(key, timeout, abandon)
            return self._acquire_pg(key, timeout, abandon)
        except Exception:
            log.warning("fetch lock for %r not available: fetching without it", key, exc_info=True)
            return None

    # -- SQLite: flock on a fixed number of slot files -------------------------------------
    def _acquire_file(self, key: str, timeout: float, abandon: Callable[[], bool]) -> HeldLock | None:
        slot = int.from_bytes(_digest(key)[:4], "big") % SLOTS
        self._dir.mkdir(exist_ok=True)
        # an open file description of its own: flock then also excludes other threads here
        fd = os.open(self._dir / f"fetch-{slot:04d}", os.O_RDWR | os.O_CREAT, 0o600)
        waited = False
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = True
                    if time.monotonic() >= deadline or abandon():
                        os.close(fd)
                        return None
                    time.sleep(POLL)
        except BaseException:
            os.close(fd)
            raise
        return HeldLock(waited, lambda: os.close(fd))  # closing the descriptor lets go of the lock

    # -- PostgreSQL: session advisory locks ------------------------------------------------
    def _pg_engine(self) -> Any:
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    from sqlalchemy import create_engine

                    self._engine = create_engine(self._storage.engine.url, pool_size=PG_POOL,
                                                 max_overflow=PG_OVERFLOW, pool_timeout=PG_POOL_WAIT,
                                                 pool_pre_ping=True)
        return self._engine

    def _acquire_pg(self, key: str, timeout: float, abandon: Callable[[], bool]) -> HeldLock | None:
        from sqlalchemy import text

        lock_id = int.from_bytes(_digest(key)[:8], "big", signed=True)
        conn = self._pg_engine().connect()
        try:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            waited = False
            deadline = time.monotonic() + timeout
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_id}).scalar():
                waited = True
                if time.monotonic() >= deadline or abandon():
                    conn.close()
                    return None
                time.sleep(POLL)
        except BaseException:
            conn.close()
            raise

        def release() -> None:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
            except BaseException:
                conn.invalidate()  # never back to the pool still holding the lock
                raise
            conn.close()

        return HeldLock(waited, release)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
