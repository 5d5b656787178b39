"""``devpi fsck``'s checks: every blob against its name, every row against a blob.

Read-only unless asked to repair, and safe beside a running server: rows are read in one
snapshot first, then the blobs; what looks missing is looked at again in a fresh
snapshot (a row deleted and its blob collected meanwhile is no problem).

Repair never deletes bytes: a blob that does not hash to its name is moved to
``<serverdir>/quarantine/`` (never served from there). A mirror file whose blob is bad or
missing loses its cache row, so the next request downloads it again from upstream. A
private file (an upload, a doc zip, a tox result) cannot be fetched again: it is reported.
A wheel's core metadata blob is re-derived from the wheel by the server when asked for.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select

from . import schema
from .blobstore import BlobStore
from .reachability import referenced
from .storage import Storage

QUARANTINE = "quarantine"


@dataclass
class Finding:
    kind: str  # corrupt-blob | missing-blob | size-mismatch | odd-entry
    what: str  # the blob, or "<index> <relpath>"
    detail: str = ""


@dataclass
class FsckReport:
    blobs: int = 0
    bytes: int = 0
    rows: int = 0
    orphans: int = 0  # blobs no row names: normal until the garbage collector's grace ends
    corrupt: list[str] = field(default_factory=list)
    odd: list[str] = field(default_factory=list)
    private_bad: list[Finding] = field(default_factory=list)  # cannot be fetched again
    mirror_bad: list[Finding] = field(default_factory=list)
    metadata_bad: list[Finding] = field(default_factory=list)  # the server re-derives these
    quarantined: list[str] = field(default_factory=list)
    refetch: int = 0  # mirror rows dropped so the files are downloaded again

    corrupt_orphans: int = 0  # corrupt blobs no row names (disk rot all the same)

    @property
    def problems(self) -> int:
        """Each bad row once, plus what no row explains (odd entries, corrupt orphans)."""
        return self.corrupt_orphans + len(self.odd) + len(self.private_bad) + len(self.mirror_bad) + len(
            self.metadata_bad)


def check(storage: Storage, blobs: BlobStore, serverdir: Path, repair: bool = False,
          progress: Callable[[int], None] | None = None) -> FsckReport:
    report = FsckReport()
    f, m, ix = schema.files, schema.mirror_files, schema.indexes
    with storage.read() as conn:
        names = {row.id: f"{row.user}/{row.name}" for row in conn.execute(select(ix.c.id, ix.c.user, ix.c.name))}
        file_rows = conn.execute(select(f.c.index_id, f.c.relpath, f.c.sha256, f.c.size,
                                        f.c.core_metadata_sha256)).all()
        mirror_rows = conn.execute(select(m.c.index_id, m.c.relpath, m.c.sha256, m.c.size)).all()
        named = referenced(conn)
    report.rows = len(file_rows) + len(mirror_rows)
    on_disk: dict[str, int] = {}
    bad: set[str] = set()
    for entry in blobs.scan():
        if entry.odd:
            report.odd.append(entry.path)
            continue
        report.blobs += 1
        report.bytes += entry.size
        try:
            ok = blobs.matches(entry)
        except FileNotFoundError:  # collected meanwhile
            continue
        except OSError:  # replaced by a link since the scan (ELOOP), or unreadable
            report.odd.append(entry.path)
            continue
        on_disk[entry.sha256] = entry.size
        if not ok:
            bad.add(entry.sha256)
            report.corrupt.append(entry.sha256)
        if entry.sha256 not in named:
            report.orphans += 1
            report.corrupt_orphans += not ok
        if progress is not None:
            progress(report.blobs)

    def problem(sha: str, size: int | None) -> str | None:
        if sha in bad:
            return "corrupt-blob"
        if sha not in on_disk:
            return None if blobs.exists(sha) else "missing-blob"  # landed after the scan: fine
        if size is not None and on_disk[sha] != size:
            return "size-mismatch"
        return None

    for row in file_rows:
        where = f"{names.get(row.index_id, row.index_id)} {row.relpath}"
        kind = problem(row.sha256, row.size)
        if kind:
            report.private_bad.append(Finding(kind, where, row.sha256))
        if row.core_metadata_sha256:
            kind = problem(row.core_metadata_sha256, None)
            if kind:
                report.metadata_bad.append(Finding(kind, where + ".metadata", row.core_metadata_sha256))
    for row in mirror_rows:
        kind = problem(row.sha256, row.size)
        if kind:
            report.mirror_bad.append(Finding(kind, f"{names.get(row.index_id, row.index_id)} {row.relpath}",
                                             row.sha256))
    report.private_bad = _still_bad(storage, blobs, report.private_bad, bad)
    report.mirror_bad = _still_bad(storage, blobs, report.mirror_bad, bad)
    if repair:
        _repair(storage, blobs, serverdir, report, names)
    return report


def _still_bad(storage: Storage, blobs: BlobStore, findings: list[Finding], bad: set[str]) -> list[Finding]:
    """Drop the 'missing' findings whose row is gone or whose blob is back by now."""
    if not any(fd.kind == "missing-blob" for fd in findings):
        return findings
    with storage.read() as conn:
        named = referenced(conn)
    return [fd for fd in findings if fd.kind != "missing-blob" or (fd.detail in named and not blobs.exists(fd.detail))]


def _repair(storage: Storage, blobs: BlobStore, serverdir: Path, report: FsckReport, names: dict) -> None:
    qdir = serverdir / QUARANTINE
    for sha in report.corrupt:
        if blobs.quarantine(sha, qdir) is not None:
            report.quarantined.append(sha)
    m = schema.mirror_files
    by_name = {v: k for k, v in names.items()}
    with storage.cache_write() as conn:
        for fd in report.mirror_bad:
            index, relpath = fd.what.split(" ", 1)
            index_id = by_name.get(index)
            if index_id is None:
                continue
            res = conn.execute(delete(m).where(m.c.index_id == index_id, m.c.relpath == relpath,
                                               m.c.sha256 == fd.detail))
            report.refetch += res.rowcount
