"""Loading a primary's snapshot into a replica's empty database, in the caller's transaction.

A replica that cannot follow its primary's feed from serial 0 (the primary's early serials
have no row images) takes every row of the replicated tables as of one serial instead
(replication/snapshot_load.py reads them off the wire). Only an empty database takes one:
loading over rows would mix two states. The one exception is a replica whose own state is
an earlier serial of the same primary that the primary can no longer feed it from: there
the snapshot replaces every row (``clear``), in the same transaction. Table and column names are checked as the row
journal checks a feed's (``row_journal.apply``): a table that is not replicated, a column
the table does not have, or a row setting this server's own kv rows (its serial) is
refused, and the caller's transaction with it, so nothing of a bad snapshot is kept.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.engine import Connection

from . import schema
from .row_journal import LOCAL_KV, REPLICATED, JournalError, decode_value, key_columns

TABLES = frozenset((*REPLICATED, "changelog"))  # what a snapshot may fill
BATCH = 500  # rows per INSERT


def table_for(name: Any, columns: Any) -> Table:
    """The table a snapshot names, if it may fill it with these columns; JournalError if not."""
    if not isinstance(name, str) or name not in TABLES:
        raise JournalError(f"not a replicated table: {str(name)[:100]!r}")
    table = schema.metadata.tables[name]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise JournalError(f"{name}: the columns are not a list of names")
    known = {c.name for c in table.columns}
    unknown = sorted(set(columns) - known)
    if unknown:
        raise JournalError(f"{name}: unknown columns {[c[:100] for c in unknown[:10]]}")
    if len(set(columns)) != len(columns):
        raise JournalError(f"{name}: a column named twice")
    missing = [c.name for c in key_columns(table) if c.name not in columns]
    if missing:
        raise JournalError(f"{name}: the key columns {missing} are missing")
    return table


def first_filled(conn: Connection) -> str | None:
    """The first table a snapshot would fill that already holds a row (None: empty)."""
    for name in sorted(TABLES):
        q = select(1).select_from(schema.metadata.tables[name]).limit(1)
        if name == "kv":  # a fresh database has its serial (-1): that is not a state
            q = q.where(schema.kv.c.key.not_in(sorted(LOCAL_KV)))
        if conn.execute(q).first() is not None:
            return name
    return None


def clear(conn: Connection) -> None:
    """Delete what a snapshot replaces (children first; the mirror cache of a deleted index
    goes with it by its foreign key) and the row images of serials it replaces."""
    conn.execute(delete(schema.replication_rows))
    for table in reversed(schema.metadata.sorted_tables):
        if table.name == "kv":
            conn.execute(delete(table).where(table.c.key.not_in(sorted(LOCAL_KV))))
        elif table.name in TABLES:
            conn.execute(delete(table))


def load(conn: Connection, columns: dict[str, list[str]], rows: Iterable[tuple[str, list[Any]]]) -> dict[str, int]:
    """Insert ``rows`` ((table, values in ``columns[table]`` order), parents first); the
    number of rows per table. Raises JournalError for a row it must not take."""
    counts: dict[str, int] = {}
    pending: list[dict[str, Any]] = []
    current: Table | None = None

    def flush() -> None:
        if pending:
            assert current is not None
            conn.execute(insert(current), pending)
            pending.clear()

    for name, values in rows:
        if current is None or name != current.name:
            flush()
            current = table_for(name, columns.get(name))
        row = {c: decode_value(v) for c, v in zip(columns[name], values, strict=True)}
        if name == "kv" and row.get("key") in LOCAL_KV:
            raise JournalError("a snapshot may not set this server's own kv rows")
        pending.append(row)
        counts[name] = counts.get(name, 0) + 1
        if len(pending) >= BATCH:
            flush()
    flush()
    return counts
