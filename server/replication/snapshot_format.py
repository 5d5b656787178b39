"""The snapshot a primary sends a replica that cannot follow its feed from the start.

A primary whose early serials have no row images (written before migration 0009, or
brought by ``devpi import``) cannot feed a fresh replica serial by serial. Instead it sends
every row of the replicated tables as of one serial S, read in one transaction, as
newline-delimited JSON::

    {"serial": S, "uuid": "...", "tables": [{"name": "kv", "columns": [...]}, ...]}
    {"t": "kv", "r": [value, ...]}              one line per row, tables in header order
    ...
    {"end": S, "counts": {"kv": 3, ...}}        a stream without it was cut off

Shared by the primary's side (snapshot_feed.py) and the replica's (snapshot_load.py).
Values are JSON scalars; bytes are ``{"b64": ...}`` as in the row journal.
"""
from __future__ import annotations

from ..store import schema
from ..store.row_journal import LOCAL_KV, REPLICATED

# The replicated tables and the changelog (so the replica's /+changelog and its own feed
# start with the primary's history), in foreign-key order: parents before children.
TABLES = tuple(t.name for t in schema.metadata.sorted_tables if t.name in (*REPLICATED, "changelog"))
SKIPPED_KV = LOCAL_KV  # kv rows each server keeps for itself (its serial): never sent
MAX_LINE = 64 << 20  # bytes of one line (entry.MAX_LINE: a row is never bigger than a serial's line)
