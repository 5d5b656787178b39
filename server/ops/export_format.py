"""The ``devpi export`` directory format, shared by the writer (export_cmd.py) and the
reader (import_ours.py). doc/operations.md ("The export format") describes it for people.

An export is a directory::

    manifest.json           written last: format name and version, serial, counts
    tables/<table>.jsonl    one file per table: a header line {"columns": [...]},
                            then one JSON array per row, in primary-key order
    files/<aa>/<sha256>     every blob a row names, by its hash

Rows are the tables' own rows (ids included), so an import gives the same pages, ETags,
file URLs and changelog as the source had at the exported serial. The reader trusts
nothing here: every value is checked against its column before any row is written.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import BigInteger, Float, Integer, String, Table, Text

from ..store import schema

FORMAT_NAME = "devpi-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TABLES_DIR = "tables"
FILES_DIR = "files"

# The tables of a server's state, in an order in which every row's foreign keys point at
# rows inserted before it. The mirror cache is upstream's data: exported on request only.
STATE_TABLES = ("kv", "users", "indexes", "projects", "releases", "files", "deleted_files", "tokens",
                "testruns", "testrun_events", "changelog", "audit")
MIRROR_TABLES = ("mirror_lists", "mirror_pages", "mirror_files")
ALL_TABLES = STATE_TABLES + MIRROR_TABLES
# Tables deliberately left out, each with why. A new table must go into one of these lists
# (tests/ops/test_export_import.py checks the schema against them).
NOT_EXPORTED = {
    # gc's bookkeeping of unreferenced blobs in this server dir: an import copies only
    # referenced blobs, so there is nothing for it to describe there
    "blob_gc_candidates",
    # the rows each serial wrote, for replicas following from a serial (store/row_journal.py):
    # history, not state; an imported server's journal starts at its own next serial
    "replication_rows",
}

MAX_MANIFEST_BYTES = 1 << 20
MAX_LINE_BYTES = 64 << 20  # one row: a release's metadata with a long description fits many times
MAX_INT = (1 << 63) - 1  # BIGINT on both engines
SHA256 = re.compile(r"[0-9a-f]{64}")

# Text columns holding JSON, with the type of their top-level value: the server parses them
# when it reads the row, so one that does not parse would turn into an error on every page.
JSON_COLUMNS: dict[tuple[str, str], type] = {
    ("users", "config"): dict, ("indexes", "config"): dict, ("releases", "metadata"): dict,
    ("files", "log"): list, ("changelog", "changes"): list, ("tokens", "actions"): list,
    ("tokens", "indexes"): list, ("testruns", "envs"): dict, ("testruns", "info"): dict,
    ("testrun_events", "data"): dict, ("mirror_pages", "links"): list,
}


class FormatError(Exception):
    """The export directory is not one this version reads; the message is one line."""


def table(name: str) -> Table:
    return schema.metadata.tables[name]


def table_path(root: Path, name: str) -> Path:
    return root / TABLES_DIR / f"{name}.jsonl"


def blob_path(root: Path, sha256: str) -> Path:
    """Where a blob lives in an export; ``sha256`` must have passed ``check_sha256``."""
    return root / FILES_DIR / sha256[:2] / sha256


def dump_line(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode()


# -- reading, hostile input in mind ---------------------------------------------------------
def open_regular(path: Path) -> IO[bytes]:
    """Open a file of the export for reading, refusing symlinks, FIFOs and devices (a FIFO
    would hang the import, a symlink would read outside the export)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FormatError(f"{path} is missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FormatError(f"{path} is a symlink, not a regular file") from None
        raise FormatError(f"cannot open {path}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FormatError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # includes UnicodeDecodeError, over-long ints
        raise FormatError(f"{where}: malformed JSON ({str(e).splitlines()[0][:200]})") from None


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest, checked for the fields every later step relies on."""
    with open_regular(root / MANIFEST) as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise FormatError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    manifest = parse_json(data, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise FormatError(f"{MANIFEST} does not describe a {FORMAT_NAME} directory")
    version = manifest.get("format_version")
    if not _is_int(version):
        raise FormatError(f"{MANIFEST}: format_version must be an integer")
    if version > FORMAT_VERSION:
        raise FormatError(f"export format version {version} is newer than this devpi reads "
                          f"({FORMAT_VERSION}): import with a newer devpi")
    if version < 1:
        raise FormatError(f"export format version {version} does not exist")
    serial = manifest.get("serial")
    if not _is_int(serial) or not -1 <= serial <= MAX_INT:
        raise FormatError(f"{MANIFEST}: serial must be an integer between -1 and {MAX_INT}")
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        raise FormatError(f"{MANIFEST}: tables must be an object of table -> row count")
    for name, count in tables.items():
        if name not in ALL_TABLES:
            raise FormatError(f"{MANIFEST}: unknown table {name[:100]!r}")
        if not _is_int(count) or not 0 <= count <= MAX_INT:
            raise FormatError(f"{MANIFEST}: row count of {name} must be a non-negative integer")
    missing = [t for t in STATE_TABLES if t not in tables]
    if missing:
        raise FormatError(f"{MANIFEST}: tables {', '.join(missing)} are missing")
    heads = manifest.get("schema")
    if not isinstance(heads, list) or not all(isinstance(h, str) for h in heads):
        raise FormatError(f"{MANIFEST}: schema must be a list of migration revisions")
    return manifest


def iter_rows(root: Path, name: str) -> Iterator[dict[str, Any]]:
    """The rows of one table file as column -> value, each checked against the column."""
    tbl = table(name)
    path = table_path(root, name)
    where = f"{TABLES_DIR}/{name}.jsonl"
    with open_regular(path) as f:
        head = _read_line(f, where, 1)
        if head is None:
            raise FormatError(f"{where}: empty (no header line)")
        header = parse_json(head, f"{where} line 1")
        columns = header.get("columns") if isinstance(header, dict) else None
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise FormatError(f"{where}: the first line must be {{\"columns\": [...]}}")
        known = set(tbl.c.keys())
        unknown = [c for c in columns if c not in known]
        if unknown or len(set(columns)) != len(columns):
            raise FormatError(f"{where}: unknown or repeated columns {unknown[:5]!r}")
        absent = [c for c in known if c not in columns]
        if absent:
            raise FormatError(f"{where}: columns {sorted(absent)!r} are missing")
        lineno = 1
        while True:
            lineno += 1
            line = _read_line(f, where, lineno)
            if line is None:
                return
            values = parse_json(line, f"{where} line {lineno}")
            if not isinstance(values, list) or len(values) != len(columns):
                raise FormatError(f"{where} line {lineno}: expected a list of {len(columns)} values")
            row = dict(zip(columns, values, strict=True))
            for col in columns:
                _check_value(tbl, col, row[col], f"{where} line {lineno}")
            yield row


def _read_line(f: IO[bytes], where: str, lineno: int) -> bytes | None:
    line = f.readline(MAX_LINE_BYTES + 1)
    if not line:
        return None
    if len(line) > MAX_LINE_BYTES:
        raise FormatError(f"{where} line {lineno}: longer than {MAX_LINE_BYTES} bytes")
    return line


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_value(tbl: Table, col: str, value: Any, where: str) -> None:
    column = tbl.c[col]
    if value is None:
        if not column.nullable:
            raise FormatError(f"{where}: {tbl.name}.{col} must not be null")
        return
    ctype = column.type
    if isinstance(ctype, (Integer, BigInteger)):
        if not _is_int(value) or not -MAX_INT - 1 <= value <= MAX_INT:
            raise FormatError(f"{where}: {tbl.name}.{col} must be an integer within 64 bits")
    elif isinstance(ctype, Float):
        if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value) or abs(value) > 1e300:
            raise FormatError(f"{where}: {tbl.name}.{col} must be a finite number")
    elif isinstance(ctype, (String, Text)):
        if not isinstance(value, str):
            raise FormatError(f"{where}: {tbl.name}.{col} must be a string")
        if ctype.length is not None and len(value) > ctype.length:
            raise FormatError(f"{where}: {tbl.name}.{col} is longer than {ctype.length} characters")
        if "\x00" in value:
            raise FormatError(f"{where}: {tbl.name}.{col} holds a NUL character")
    else:  # a column type this reader does not know how to check: refuse rather than guess
        raise FormatError(f"{where}: {tbl.name}.{col} has a type this devpi cannot import")
    kind = JSON_COLUMNS.get((tbl.name, col))
    if kind is not None and not isinstance(parse_json(value.encode(), f"{where}: {tbl.name}.{col}"), kind):
        raise FormatError(f"{where}: {tbl.name}.{col} must hold a JSON {kind.__name__}")
    if col in ("sha256", "core_metadata_sha256"):
        check_sha256(value, f"{where}: {tbl.name}.{col}")
    elif col == "relpath":
        check_relpath(value, f"{where}: {tbl.name}.relpath")
    elif col == "filename" and not _safe_segment(value):
        raise FormatError(f"{where}: {tbl.name}.filename {value[:100]!r} is not a plain file name")


def check_sha256(value: str, where: str) -> None:
    if not SHA256.fullmatch(value):
        raise FormatError(f"{where} {value[:100]!r} is not a lower-case hex sha256")


def check_relpath(value: str, where: str) -> None:
    """A file's path under its index URL: +f/... or +e/..., plain segments only."""
    parts = value.split("/")
    if parts[0] not in ("+f", "+e") or len(parts) < 2 or not all(_safe_segment(p) for p in parts[1:]):
        raise FormatError(f"{where} {value[:100]!r} is not a safe +f/ or +e/ path")


def _safe_segment(name: str) -> bool:
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and not any(ord(c) < 32 for c in name))
