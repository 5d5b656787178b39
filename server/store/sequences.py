"""PostgreSQL sequences past the ids a replica was given, so a promoted replica can insert.

A replica inserts its primary's rows with their ids (``row_journal.apply``, a snapshot):
on PostgreSQL that does not move the tables' id sequences, so the first row a promoted
replica inserts itself would take id 1 and collide. At a primary's start each replicated
table's sequence is set past its largest id (never back: a sequence already further keeps
its place). SQLite needs nothing: an explicit id above ``sqlite_sequence`` moves it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Integer, func, select, text

from . import schema
from .row_journal import REPLICATED

if TYPE_CHECKING:
    from .storage import Storage


def advance(storage: Storage) -> list[str]:
    """Move every lagging sequence of a replicated table past its largest id; the tables
    whose sequence moved (empty on SQLite and on a server that never was a replica)."""
    if storage.is_sqlite:
        return []
    moved = []
    with storage.engine.connect() as conn:
        with conn.begin():
            # under the serial lock: no write transaction takes an id meanwhile
            conn.execute(select(schema.kv.c.value).where(schema.kv.c.key == "serial").with_for_update())
            for name in REPLICATED:
                table = schema.metadata.tables[name]
                pk = list(table.primary_key.columns)
                if len(pk) != 1 or not isinstance(pk[0].type, Integer) or pk[0].autoincrement is False:
                    continue
                seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                   {"t": name, "c": pk[0].name}).scalar()
                if seq is None:
                    continue
                top = conn.execute(select(func.max(pk[0]))).scalar()
                last, called = conn.execute(text(f"SELECT last_value, is_called FROM {seq}")).one()
                next_id = last + 1 if called else last
                if top is not None and top >= next_id:
                    conn.execute(text("SELECT setval(:s, :v, true)"), {"s": seq, "v": top})
                    moved.append(name)
    return moved
