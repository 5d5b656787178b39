"""The SQLite database's serial and uuid, read with the standard library alone.

At start-up the server may answer simple pages kept from its last run
(repos/page_snapshot.py) before SQLAlchemy is even imported, but only pages
stamped with the serial the database has now: this is that one-row read. It is
the only SQL outside ``storage.py``/``catalog.py``, and deliberately tiny: the
``kv`` rows ``serial`` and ``uuid`` (schema.py's ``kv`` table), nothing else.
tests/server/store/test_serial_peek.py checks it against ``Storage``.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_QUERY = "SELECT key, value FROM kv WHERE key IN ('serial', 'uuid')"


class SerialPeek:
    """A read-only look at one SQLite database's serial and uuid, usable from any thread."""

    def __init__(self, path: Path):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def read(self) -> tuple[int, str] | None:
        """(serial, uuid), or None when the database is missing, unreadable or not set up."""
        with self._lock:
            if self._closed:
                return None
            try:
                if self._conn is None:
                    # mode=rw: never creates a database; autocommit: every read sees the newest commit
                    self._conn = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=1.0,
                                                 isolation_level=None, check_same_thread=False)
                rows = dict(self._conn.execute(_QUERY).fetchall())
            except sqlite3.Error:
                return None
        try:
            return int(rows["serial"]), str(rows["uuid"])
        except (KeyError, ValueError, TypeError):
            return None

    def close(self) -> None:
        """Close the connection; every later read answers None."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
