"""The audit log's rows: append one, keep the newest ``keep``, read them in pages.

Rows live in the database (the ``audit`` table), so every server process on one PostgreSQL
writes to and reads from the same log. Each row is written in its own short transaction
after the request was answered: a request's own transaction (its commit or its rollback)
never decides whether it is audited. Retention is by count: every ``PRUNE_EVERY`` rows a
process deletes those older than the newest ``keep`` (ids only grow, so this is one indexed
range delete, safe beside other processes doing the same).
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, insert, select

from . import schema

if TYPE_CHECKING:
    from .storage import Storage

PRUNE_EVERY = 100
MAX_PAGE = 1000
FIELD_LIMITS = {"event": 20, "user": 100, "client": 100, "method": 10, "path": 1000}


class AuditLog:
    def __init__(self, storage: Storage, keep: int):
        self.storage = storage
        self.keep = keep
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def append(self, *, event: str, user: str | None, client: str, method: str, path: str,
               status: int) -> None:
        row: dict[str, Any] = {"at": time.time(), "event": event, "user": user, "client": client,
                               "method": method, "path": path, "status": status}
        for key, limit in FIELD_LIMITS.items():
            if row[key] is not None:
                row[key] = _printable(row[key])[:limit]
        with self._write() as conn:
            conn.execute(insert(schema.audit).values(**row))
        with self._lock:
            n = next(self._count)
        if n % PRUNE_EVERY == 0:
            self.prune()

    def prune(self) -> None:
        with self._write() as conn:
            newest = conn.execute(select(func.max(schema.audit.c.id))).scalar()
            if newest is not None and newest > self.keep:
                conn.execute(delete(schema.audit).where(schema.audit.c.id <= newest - self.keep))

    def page(self, since: int, limit: int) -> list[dict[str, Any]]:
        """Entries with an id above ``since``, oldest first, at most ``limit`` (<= MAX_PAGE)."""
        t = schema.audit
        with self.storage.read() as conn:
            rows = conn.execute(select(t).where(t.c.id > since).order_by(t.c.id)
                                .limit(min(limit, MAX_PAGE))).all()
        return [{"id": r.id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.at)),
                 "timestamp": r.at, "event": r.event, "user": r.user, "client": r.client,
                 "method": r.method, "path": r.path, "status": r.status} for r in rows]

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction of its own (not the serial's: an audit row is no change of the
        index state, and must not queue behind an upload's commit on PostgreSQL)."""
        with self.storage.engine.connect() as conn:
            conn = conn.execution_options(devpi_write=True)
            with conn.begin():
                yield conn


def _printable(text: str) -> str:
    """What a log reader can show: control characters (a NUL from a URL, say: PostgreSQL
    refuses it in text) replaced."""
    return "".join(c if c.isprintable() else "?" for c in text)
