"""Read a ``devpi export`` directory (export_format.py) into a fresh server dir.

Nothing in the export is trusted: the manifest and every row are checked (types, lengths,
hashes, paths) in a first pass before anything is written; then the blobs are copied,
each hashed on the way and compared with its name and its row's size; then every row goes
in one write transaction, so a bad export leaves no rows behind (importing.py's contract).
Rows keep their ids, the serial and the changelog, so pages, ETags and file URLs come out
the same as on the source at the exported serial.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from ..core import Core
from ..store.blobstore import CHUNK
from ..store.migrate import known_heads
from ..store.storage import WriteTx, kv_set
from . import export_format as fmt
from .importing import ImportRefused, ImportSummary, initialise_state

BATCH = 1000
IDENTITY_KEYS = ("secret", "uuid")  # written by initialise_state, not copied as kv rows
IDENTITY_SHAPES = {"secret": re.compile(r"(?:[0-9a-f]{2}){16,128}"), "uuid": re.compile(r"[0-9a-f]{32}")}


@dataclass
class Plan:
    """What the checking pass learnt: the blobs to copy and the server's identity."""

    tables: tuple[str, ...]
    required: dict[str, int] = field(default_factory=dict)  # sha256 -> size from its rows
    optional: set[str] = field(default_factory=set)  # wheel METADATA copies
    identity: dict[str, str] = field(default_factory=dict)
    summary_counts: dict[str, int] = field(default_factory=dict)


def import_into(core: Core, source: Path, out: Callable[[str], None]) -> ImportSummary:
    try:
        manifest = fmt.read_manifest(source)
        plan = check(source, manifest)
    except fmt.FormatError as e:
        raise ImportRefused(str(e)) from None
    summary = ImportSummary(source_format=f"devpi export (format {manifest['format_version']}, "
                                          f"serial {manifest['serial']})")
    summary.bytes = copy_blobs(core, source, plan)
    # psycopg warns on stderr when a connection whose insert failed is closed: the error
    # below says it in one line already
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    try:
        with core.storage.write(journaled=False) as tx:  # no tx.record: the changelog rows come from the export
            initialise_state(tx, node_uuid=plan.identity.get("uuid"), secret=plan.identity.get("secret"))
            for row in _rows(source, "kv"):  # over the schema's own ("serial": -1)
                kv_set(tx.conn, row["key"], row["value"])
            for name in plan.tables[1:]:  # after kv, in foreign-key order
                insert_rows(tx, fmt.table(name), _rows(source, name))
            if not core.storage.is_sqlite:
                advance_sequences(tx, plan.tables)
    except fmt.FormatError as e:  # the export changed between the two passes
        raise ImportRefused(str(e)) from None
    except SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:300]
        raise ImportRefused(f"the exported rows do not fit together, nothing was imported ({reason})") from None
    c = plan.summary_counts
    summary.users, summary.indexes, summary.projects = c["users"], c["indexes"], c["projects"]
    summary.releases, summary.files = c["releases"], c.get("releasefile", 0)
    summary.docs, summary.toxresults = c.get("doczip", 0), c.get("toxresult", 0)
    if plan.identity.get("uuid"):
        summary.notes.append("kept the source's node uuid and secret: logins made on it stay valid here")
    if any(t in plan.tables for t in fmt.MIRROR_TABLES):
        summary.notes.append("imported the mirror cache (pages and files from upstream)")
    return summary


def _rows(source: Path, name: str) -> Iterator[dict[str, Any]]:
    for row in fmt.iter_rows(source, name):
        if name == "kv" and row["key"] in IDENTITY_KEYS:
            continue
        yield row


# -- pass 1: check everything, write nothing ------------------------------------------------
def check(source: Path, manifest: dict[str, Any]) -> Plan:
    heads = set(manifest["schema"])
    if heads != known_heads():
        raise fmt.FormatError(
            f"the export's schema ({', '.join(sorted(heads))[:200]}) is not this devpi's "
            f"({', '.join(sorted(known_heads()))}): import it with the devpi version that wrote it "
            f"(server version {str(manifest.get('server_version'))[:40]}), then upgrade")
    listed = manifest["tables"]
    plan = Plan(tables=tuple(t for t in fmt.ALL_TABLES if t in listed))
    for name in plan.tables:
        count = 0
        for row in fmt.iter_rows(source, name):
            count += 1
            _note_row(plan, name, row)
        if count != listed[name]:
            raise fmt.FormatError(f"{fmt.TABLES_DIR}/{name}.jsonl has {count} rows, the manifest says "
                                  f"{listed[name]}: the export is incomplete or altered")
        plan.summary_counts[name] = count
    serial = plan.identity.get("serial")
    if serial != str(manifest["serial"]) and not (serial is None and manifest["serial"] == -1):
        raise fmt.FormatError(f"the exported serial ({str(serial)[:30]}) is not the manifest's ({manifest['serial']})")
    plan.identity.pop("serial", None)
    for key, pattern in IDENTITY_SHAPES.items():  # the server reads them at start: bad ones would
        value = plan.identity.get(key)  # fail it after the rows were in
        if value is not None and not pattern.fullmatch(value):
            raise fmt.FormatError(f"the exported {key} is not {pattern.pattern}")
    return plan


def _note_row(plan: Plan, name: str, row: dict[str, Any]) -> None:
    if name == "kv" and row["key"] in (*IDENTITY_KEYS, "serial"):
        plan.identity[row["key"]] = row["value"]
    elif name in ("files", "mirror_files"):
        known = plan.required.get(row["sha256"])
        if known is not None and known != row["size"]:
            raise fmt.FormatError(f"blob {row['sha256']} is named with two different sizes")
        plan.required[row["sha256"]] = row["size"]
        if name == "files":
            if row["core_metadata_sha256"]:
                plan.optional.add(row["core_metadata_sha256"])
            plan.summary_counts[row["rel"]] = plan.summary_counts.get(row["rel"], 0) + 1


# -- pass 2: blobs --------------------------------------------------------------------------
def copy_blobs(core: Core, source: Path, plan: Plan) -> int:
    """Copy every referenced blob into the target's store, hashed on the way; returns the
    bytes of the required ones. A blob that does not match its name or size is refused."""
    total = 0
    synced: set[str] = set()
    for sha, size in sorted(plan.required.items()):
        got = _copy_blob(core, source, sha, synced, required=True)
        if got != size:
            raise ImportRefused(f"{fmt.FILES_DIR}/{sha[:2]}/{sha} has {got} bytes, its row says {size}")
        total += size
    for sha in sorted(plan.optional - plan.required.keys()):
        _copy_blob(core, source, sha, synced, required=False)
    for prefix in synced:
        core.blobs.sync_dir(prefix)  # before any row names them
    return total


def _copy_blob(core: Core, source: Path, sha: str, synced: set[str], *, required: bool) -> int | None:
    name = f"{fmt.FILES_DIR}/{sha[:2]}/{sha}"
    path = fmt.blob_path(source, sha)
    if not required and not os.path.lexists(path):
        return None  # a wheel's METADATA the source had lost: the server re-derives it
    try:
        src = fmt.open_regular(path)
    except fmt.FormatError as e:
        raise ImportRefused(str(e)) from None
    with src, core.blobs.writer() as w:
        while data := src.read(CHUNK):
            w.write(data)
        if w.sha256 != sha:
            raise ImportRefused(f"{name} does not match its hash (its bytes hash to {w.sha256})")
        w.commit(sync_dir=False)
        synced.add(sha[:2])
        return w.size


# -- pass 3: rows, one transaction ----------------------------------------------------------
def insert_rows(tx: WriteTx, tbl, rows: Iterator[dict[str, Any]]) -> None:
    """Insert in batches. A toxresult row names the file it tests, which (ids only grow) comes
    earlier; one that does not is inserted unlinked and linked once all files are in."""
    later: list[tuple[int, int]] = []
    seen: set[int] = set()
    batch: list[dict[str, Any]] = []
    for row in rows:
        if tbl.name == "files":
            seen.add(row["id"])
            if row["for_file_id"] is not None and row["for_file_id"] not in seen:
                later.append((row["id"], row["for_file_id"]))
                row = {**row, "for_file_id": None}
        batch.append(row)
        if len(batch) >= BATCH:
            tx.conn.execute(insert(tbl), batch)
            batch = []
    if batch:
        tx.conn.execute(insert(tbl), batch)
    for file_id, for_file_id in later:
        tx.conn.execute(update(tbl).where(tbl.c.id == file_id).values(for_file_id=for_file_id))


def advance_sequences(tx: WriteTx, tables: tuple[str, ...]) -> None:
    """PostgreSQL hands out ids from sequences, which inserting explicit ids does not move:
    set each past the largest imported id, or the next upload would collide."""
    for name in tables:
        tbl = fmt.table(name)
        if "id" not in tbl.c or not tbl.c.id.autoincrement or str(tbl.c.id.type) not in ("INTEGER", "BIGINT"):
            continue
        seq = tx.conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": name}).scalar()
        if seq is None:
            continue
        largest = tx.conn.execute(select(func.max(tbl.c.id))).scalar()
        tx.conn.execute(text("SELECT setval(CAST(:s AS regclass), :v, :called)"),
                        {"s": seq, "v": largest or 1, "called": largest is not None})
