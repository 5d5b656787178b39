"""``devpi export DIR``: a consistent, versioned copy of a server dir, while it keeps serving.

Every row is read in one read transaction (a WAL snapshot on SQLite, REPEATABLE READ on
PostgreSQL), so the export is the state at exactly one serial however many uploads commit
meanwhile. Blobs are copied after that transaction: they are immutable and named by their
hash, so a blob copied later is still the one the row meant; one deleted meanwhile (gc keeps
unreferenced blobs for a grace period) makes the export fail, never silently incomplete.

The export is written to ``DIR.tmp-export`` (fsynced, manifest last) and renamed to ``DIR``
at the end: a killed export leaves no ``DIR``, and the next run starts that dir over.
The format is in export_format.py and doc/operations.md.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy.engine import Connection

from .. import __version__
from ..core import Core
from ..store.blobstore import CHUNK
from ..store.consistent_read import consistent_read, serial_of, table_rows
from ..store.migrate import stored_heads
from . import export_format as fmt
from .offline import add_storage_options, open_core

TMP_SUFFIX = ".tmp-export"


class ExportFailed(Exception):
    """The export cannot be written; the message is one line."""


@dataclass
class Referenced:
    """The blobs the exported rows name: required ones (sha256 -> size) must be copied;
    optional ones (a wheel's METADATA, which the server re-derives from the wheel) are
    copied when present and intact."""

    required: dict[str, int] = field(default_factory=dict)
    optional: set[str] = field(default_factory=set)


def register(parser: argparse.ArgumentParser) -> None:
    add_storage_options(parser)
    parser.add_argument("--include-mirror-cache", action="store_true",
                        help="also export the mirror indexes' cached pages and files (upstream's data, "
                             "otherwise fetched again after an import)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each file as it is copied")
    parser.add_argument("directory", type=Path,
                        help="where to write the export (must not exist, or be an empty directory)")


def run(args: argparse.Namespace, out: Callable[[str], None] | None = None) -> int:
    say = out or (lambda line: print(line, flush=True))
    target = args.directory.expanduser().absolute()
    old_umask = os.umask(0o077)  # the export holds password hashes and the server's secret
    try:
        check_target(target)
        with claim_tmp(target) as tmp:
            core = open_core(args)
            try:
                manifest = export_to(core, tmp, include_mirror_cache=args.include_mirror_cache,
                                     say=say if args.verbose else None)
            finally:
                core.storage.close()
                shutil.rmtree(core.blobs.tmpdir, ignore_errors=True)  # the source's blobs/tmp/p*: unused
            publish(tmp, target)
    except (ExportFailed, fmt.FormatError) as e:
        print(f"devpi export: error: {e}", file=sys.stderr)
        return 1
    finally:
        os.umask(old_umask)
    counts = manifest["counts"]
    say(f"exported serial {manifest['serial']} to {target}: {counts['users']} users, {counts['indexes']} indexes, "
        f"{counts['projects']} projects, {counts['releases']} releases, {counts['files']} files "
        f"({counts['blobs']} blobs, {counts['blob_bytes']} bytes)")
    for note in manifest["notes"]:
        say(f"note: {note}")
    return 0


# -- the target directory ---------------------------------------------------------------------
def check_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ExportFailed(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise ExportFailed(f"{target} exists and is not empty; export into a new or empty directory")
    if not target.parent.is_dir():
        raise ExportFailed(f"{target.parent} is not a directory")


class claim_tmp:
    """``DIR.tmp-export`` for this run alone: a lock file beside it keeps a second export to the
    same DIR out, and what a killed run left there is removed first."""

    def __init__(self, target: Path):
        self.tmp = target.with_name(target.name + TMP_SUFFIX)
        self.lock_path = target.with_name(target.name + TMP_SUFFIX + ".lock")
        self._lock: IO[str] | None = None

    def __enter__(self) -> Path:
        # not following a symlink someone planted there (a shared backup directory)
        self._lock = os.fdopen(os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600), "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ExportFailed(f"another devpi export is writing {self.tmp}") from None
        if self.tmp.exists() or self.tmp.is_symlink():
            if self.tmp.is_symlink() or not self.tmp.is_dir():
                self.tmp.unlink()
            else:
                shutil.rmtree(self.tmp)  # a killed run's: never complete (see publish)
        self.tmp.mkdir(mode=0o700)
        return self.tmp

    def __exit__(self, *exc) -> None:
        if exc[0] is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.lock_path.unlink(missing_ok=True)
        assert self._lock is not None
        self._lock.close()


def publish(tmp: Path, target: Path) -> None:
    """Rename the finished export into place; an empty ``target`` directory is replaced."""
    _fsync_dir(tmp)
    try:
        os.rename(tmp, target)
    except OSError as e:
        raise ExportFailed(f"cannot rename {tmp} to {target}: {e.strerror}") from None
    _fsync_dir(target.parent)


# -- rows -----------------------------------------------------------------------------------
def export_to(core: Core, root: Path, *, include_mirror_cache: bool,
              say: Callable[[str], None] | None) -> dict:
    """Write rows, blobs and (last) the manifest into ``root``; returns the manifest."""
    (root / fmt.TABLES_DIR).mkdir()
    tables = fmt.STATE_TABLES + (fmt.MIRROR_TABLES if include_mirror_cache else ())
    refs = Referenced()
    counts: dict[str, int] = {}
    extra = {"releasefile": 0, "doczip": 0, "toxresult": 0}
    with consistent_read(core.storage) as conn:
        serial = serial_of(conn)
        for name in tables:
            counts[name] = _write_table(conn, root, name, refs, extra)
    heads = sorted(stored_heads(core.storage))
    _fsync_dir(root / fmt.TABLES_DIR)
    notes: list[str] = []
    blob_count, blob_bytes = copy_blobs(core, root, refs, notes, say)
    manifest = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "serial": serial,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "server_version": __version__,
        "source_storage": "sqlite" if core.storage.is_sqlite else "postgresql",
        "schema": heads,
        "includes_mirror_cache": include_mirror_cache,
        "tables": counts,
        "counts": {"users": counts["users"], "indexes": counts["indexes"], "projects": counts["projects"],
                   "releases": counts["releases"], "files": extra["releasefile"], "doczips": extra["doczip"],
                   "toxresults": extra["toxresult"], "blobs": blob_count, "blob_bytes": blob_bytes},
        "notes": notes,
    }
    _write_durably(root / fmt.MANIFEST, fmt.dump_line(manifest))
    return manifest


def _write_table(conn: Connection, root: Path, name: str, refs: Referenced, extra: dict[str, int]) -> int:
    columns = list(fmt.table(name).c.keys())
    count = 0
    with open(fmt.table_path(root, name), "wb") as f:
        f.write(fmt.dump_line({"columns": columns}))
        for row in table_rows(conn, name):
            values = list(row)
            f.write(fmt.dump_line(values))
            count += 1
            if name == "files":
                rec = dict(zip(columns, values, strict=True))
                refs.required[rec["sha256"]] = rec["size"]
                if rec["core_metadata_sha256"]:
                    refs.optional.add(rec["core_metadata_sha256"])
                extra[rec["rel"]] = extra.get(rec["rel"], 0) + 1
            elif name == "mirror_files":
                rec = dict(zip(columns, values, strict=True))
                refs.required[rec["sha256"]] = rec["size"]
        f.flush()
        os.fsync(f.fileno())
    return count


# -- blobs ----------------------------------------------------------------------------------
def copy_blobs(core: Core, root: Path, refs: Referenced, notes: list[str],
               say: Callable[[str], None] | None) -> tuple[int, int]:
    """Copy each referenced blob, checking its hash on the way; returns (count, bytes)."""
    count = total = 0
    dirs: set[Path] = set()
    for sha in sorted(refs.required):
        size = _copy_blob(core, root, sha, dirs)
        if size is None:
            raise ExportFailed(f"blob {sha} is named by a row but missing from the source "
                               "(deleted meanwhile, or lost: run devpi fsck)")
        if size < 0:
            raise ExportFailed(f"blob {sha} in the source does not match its hash (run devpi fsck)")
        if size != refs.required[sha]:
            raise ExportFailed(f"blob {sha} has {size} bytes, its row says {refs.required[sha]} (run devpi fsck)")
        count, total = count + 1, total + size
        if say:
            say(f"copied {fmt.FILES_DIR}/{sha[:2]}/{sha} ({size} bytes)")
    skipped = 0
    for sha in sorted(refs.optional - refs.required.keys()):
        size = _copy_blob(core, root, sha, dirs)
        if size is None or size < 0:
            skipped += 1
            continue
        count, total = count + 1, total + size
    if skipped:
        notes.append(f"{skipped} wheel METADATA copies were missing or damaged in the source and are not "
                     "exported; the server takes them out of the wheels again when asked")
    for d in dirs:
        _fsync_dir(d)
    if dirs:
        _fsync_dir(root / fmt.FILES_DIR)
    return count, total


def _copy_blob(core: Core, root: Path, sha: str, dirs: set[Path]) -> int | None:
    """The blob's size once copied; None if the source has no such blob, -1 if its bytes do
    not hash to its name (the partial copy is removed)."""
    dest = fmt.blob_path(root, sha)
    if dest.parent not in dirs:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dirs.add(dest.parent)
    try:
        src = open(core.blobs.filename(sha), "rb", buffering=0)
    except FileNotFoundError:
        return None
    h = hashlib.sha256()
    size = 0
    with src, open(dest, "wb") as f:
        while data := src.read(CHUNK):
            h.update(data)
            f.write(data)
            size += len(data)
        f.flush()
        os.fsync(f.fileno())
    if h.hexdigest() != sha:
        dest.unlink()
        return -1
    return size


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
