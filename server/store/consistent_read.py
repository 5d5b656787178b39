"""Every row of a set of tables as of one serial: one read transaction that sees one commit.

SQLite's WAL already gives each read transaction a single snapshot; PostgreSQL's default
READ COMMITTED would let each SELECT see newer commits, so the transaction is REPEATABLE
READ there. Shared by ``devpi export`` (ops/export_cmd.py) and a primary's snapshot for
replicas (replication/snapshot_feed.py): both must describe exactly one serial however
many uploads commit while they read.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from . import schema
from .storage import kv_get

if TYPE_CHECKING:
    from .storage import Storage

ROWS_PER_FETCH = 1000  # rows per round trip while streaming a table


class consistent_read:
    """``with consistent_read(storage) as conn``: a read-only transaction at one commit."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def __enter__(self) -> Connection:
        conn = self.storage.engine.connect()
        if not self.storage.is_sqlite:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._conn = conn
        self._tx = conn.begin()
        return conn

    def __exit__(self, *exc: Any) -> None:
        try:
            self._tx.rollback()  # read only: nothing to keep
        finally:
            self._conn.close()


def serial_of(conn: Connection) -> int:
    """The serial the transaction sees (-1 for a database without one)."""
    text = kv_get(conn, "serial")
    return int(text) if text is not None else -1


def table_rows(conn: Connection, name: str) -> Iterator[Any]:
    """The rows of one table, streamed, in primary-key order (all columns for a table without
    one), so the same state reads the same, and ids referring to earlier rows come after them."""
    tbl = schema.metadata.tables[name]
    order = list(tbl.primary_key.columns) or list(tbl.c)
    query = select(tbl).order_by(*order).execution_options(stream_results=True, yield_per=ROWS_PER_FETCH)
    yield from conn.execute(query)
