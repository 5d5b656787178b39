"""Row images of every write transaction: what a replica applies to reach the same serial.

The changelog says *what* changed in words (``{"kind": "release", "index": ...}``) for the
caches and the search index; a replica needs the rows themselves. Every write transaction
(``Storage.write``) carries a ``RowJournal`` on its connection: SQLAlchemy's execute events
note the primary key of every row an INSERT, UPDATE or DELETE touches in a replicated
table (the keys an UPDATE or DELETE will touch are selected by its own WHERE just before
it runs), and just before the changelog row is written the journal reads each noted row
as it now is. A row that is gone is a delete; one that is there is its full image. So a
row touched five times costs one image, and a cascade the database did on its own (a
deleted index takes its projects) needs nothing: the replica's schema cascades alike.

Stored in ``replication_rows`` (one row per serial, migration 0009) in the same
transaction as the changelog row: a replica at serial N that applies serial N+1's rows in
one transaction holds exactly what the primary held at N+1.

Writes must go through SQLAlchemy Core statements on the transaction's connection (what
``catalog``, ``tokens`` and ``testruns`` do): a raw SQL string is not seen here, and
``apply`` refuses nothing it cannot check, so tests/server/store/test_row_journal.py
replays the journal of a server driven through its HTTP API into an empty database and
compares every replicated table.
"""
from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, UniqueConstraint, and_, delete, event, insert, select, tuple_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Delete, Insert, Update

from . import schema

# What a replica takes over as is. Not: the changelog (the replica writes its own row with
# the same serial and changes), the mirror cache (a replica fills its own through the
# primary), the audit log (this server's own), gc's bookkeeping (this server's blobs).
REPLICATED = ("kv", "users", "indexes", "projects", "releases", "files", "deleted_files", "tokens",
              "testruns", "testrun_events")
LOCAL_KV = frozenset({"serial"})  # kv rows that are each server's own
OPTION = "devpi_journal"  # the execution option that carries a transaction's journal
_BATCH = 500  # primary keys per SELECT when reading images


class JournalError(RuntimeError):
    """A write the journal cannot describe (it would silently miss a replica)."""


class RowJournal:
    """The rows one write transaction touched, by table, in first-touch order."""

    def __init__(self) -> None:
        self.touched: dict[str, dict[tuple, None]] = {}
        self.closed = False

    def note(self, table: str, keys: Iterable[tuple]) -> None:
        if self.closed:
            return
        seen = self.touched.setdefault(table, {})
        for key in keys:
            seen[tuple(key)] = None

    def __bool__(self) -> bool:
        return any(self.touched.values())

    def images(self, conn: Connection) -> list[dict[str, Any]]:
        """Each touched row as it is now (``{"t", "k", "row"}``) or gone (``{"t", "k"}``),
        tables in foreign-key order. Closes the journal: what the transaction writes after
        (its changelog row, the serial) is not part of what a replica applies."""
        self.closed = True
        out: list[dict[str, Any]] = []
        for table in schema.metadata.sorted_tables:
            keys = list(self.touched.get(table.name, ()))
            if table.name == "kv":
                keys = [k for k in keys if k[0] not in LOCAL_KV]
            if not keys:
                continue
            pk = key_columns(table)
            found: dict[tuple, dict[str, Any]] = {}
            for start in range(0, len(keys), _BATCH):
                chunk = keys[start:start + _BATCH]
                where = pk[0].in_([k[0] for k in chunk]) if len(pk) == 1 else tuple_(*pk).in_(chunk)
                for row in conn.execute(select(table).where(where)).mappings():
                    found[tuple(row[c.name] for c in pk)] = {c: _encode(v) for c, v in row.items()}
            for key in keys:
                row = found.get(key)
                out.append({"t": table.name, "k": list(key), **({"row": row} if row is not None else {})})
        return out


def key_columns(table: Table) -> list:
    """What names one row: the primary key, or for a table without one its first unique
    constraint (``deleted_files``)."""
    if table.primary_key.columns:
        return list(table.primary_key.columns)
    for constraint in sorted(table.constraints, key=lambda c: str(c.name)):
        if isinstance(constraint, UniqueConstraint):
            return list(constraint.columns)
    raise JournalError(f"{table.name} has neither a primary key nor a unique constraint")


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def _journal_of(conn: Connection, options: dict) -> RowJournal | None:
    journal = options.get(OPTION)
    if journal is None:
        journal = conn.get_execution_options().get(OPTION)
    return journal


def _keys_from_params(table: Table, rows: list[dict]) -> list[tuple] | None:
    names = [c.name for c in key_columns(table)]
    keys = []
    for row in rows:
        if any(row.get(n) is None for n in names):  # left to the database (an autoincrement id)
            return None
        keys.append(tuple(row[n] for n in names))
    return keys


def install(engine: Engine) -> None:
    """Hook the journal into every write transaction's connection of ``engine``."""

    @event.listens_for(engine, "before_execute")
    def _before(conn, clauseelement, multiparams, params, execution_options):
        journal = _journal_of(conn, execution_options)
        if journal is None or journal.closed or not isinstance(clauseelement, (Update, Delete)):
            return
        table = clauseelement.table
        if table.name not in REPLICATED:
            return
        if multiparams or params:
            raise JournalError(f"{type(clauseelement).__name__} on {table.name} with bound parameters: "
                               "the journal cannot tell which rows it touches")
        pk = key_columns(table)
        q = select(*pk)
        if clauseelement.whereclause is not None:
            q = q.where(clauseelement.whereclause)
        journal.note(table.name, conn.execute(q).all())

    @event.listens_for(engine, "after_execute")
    def _after(conn, clauseelement, multiparams, params, execution_options, result):
        journal = _journal_of(conn, execution_options)
        if journal is None or journal.closed or not isinstance(clauseelement, Insert):
            return
        table = clauseelement.table
        if table.name not in REPLICATED:
            return
        if clauseelement.select is not None:
            raise JournalError(f"INSERT ... SELECT into {table.name}: the journal cannot tell which rows it adds")
        rows = list(multiparams) if multiparams else ([params] if params else [])
        compiled = clauseelement.compile(dialect=conn.dialect)
        values = [dict(compiled.params, **r) for r in rows] if rows else [dict(compiled.params)]
        keys = _keys_from_params(table, values)
        if keys is None:
            try:
                keys = [tuple(k) for k in result.inserted_primary_key_rows]
            except Exception as e:  # executemany without return_defaults()
                raise JournalError(f"INSERT into {table.name} without its primary keys: use "
                                   f".return_defaults() so the journal learns them") from e
            if any(v is None for k in keys for v in k):
                raise JournalError(f"INSERT into {table.name}: primary keys unknown")
        journal.note(table.name, keys)


def apply(conn: Connection, images: list[dict[str, Any]]) -> None:
    """Make the replicated tables hold what ``images`` say, inside the caller's transaction:
    deletes first (children before parents), then rows in foreign-key order (parents first),
    each an UPDATE of the row with that key or an INSERT where there is none."""
    by_table: dict[str, list[dict[str, Any]]] = {}
    for image in images:
        name = image.get("t")
        if name not in REPLICATED:
            raise JournalError(f"not a replicated table: {name!r}")
        by_table.setdefault(name, []).append(image)
    ordered = [t for t in schema.metadata.sorted_tables if t.name in by_table]
    for table in reversed(ordered):
        pk = key_columns(table)
        for image in by_table[table.name]:
            if "row" not in image:
                conn.execute(delete(table).where(_key_clause(pk, image["k"])))
    for table in ordered:
        pk = key_columns(table)
        columns = {c.name for c in table.columns}
        for image in by_table[table.name]:
            row = image.get("row")
            if row is None:
                continue
            unknown = set(row) - columns
            if unknown:
                raise JournalError(f"{table.name}: unknown columns {sorted(unknown)}")
            values = {k: _decode(v) for k, v in row.items()}
            changed = conn.execute(update(table).where(_key_clause(pk, image["k"]))
                                   .values(**{k: v for k, v in values.items() if k not in {c.name for c in pk}}))
            if changed.rowcount == 0:
                conn.execute(insert(table).values(**values))


def _key_clause(pk: list, key: list) -> Any:
    if len(key) != len(pk):
        raise JournalError("a primary key of the wrong length")
    return and_(*(c == v for c, v in zip(pk, key, strict=True)))


encode_value = _encode  # a column value as JSON (bytes as {"b64": ...}); also a snapshot's (replication)
decode_value = _decode
