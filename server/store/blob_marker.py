"""Which blob store a server dir's rows point into, recorded in the server dir.

The rows (in SQLite or PostgreSQL) name blobs by sha256 only; where the bytes are is the
``--blob-storage`` option. A server started on the wrong store would list files it cannot
serve, and ``devpi fsck --repair`` or ``devpi gc`` run against the local folder would judge
an S3-backed server dir by an empty store. So the first server with ``--blob-storage``
writes the URL to ``<serverdir>/blob-storage``; later starts with another store (or none)
are refused, and the admin commands use the recorded URL unless told otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

MARKER = "blob-storage"


def recorded_blob_storage(serverdir: Path) -> str | None:
    try:
        return (serverdir / MARKER).read_text().strip() or None
    except FileNotFoundError:
        return None


def check_blob_storage(serverdir: Path, url: str | None) -> None:
    """SystemExit in one line when ``url`` (None: the local store) is not the store this
    server dir's rows point into."""
    recorded = recorded_blob_storage(serverdir)
    if recorded is not None and recorded != url:
        given = f"--blob-storage {url}" if url else "the local blob store"
        raise SystemExit(f"devpi: error: this server dir keeps its files in {recorded}, not {given}: "
                         f"give --blob-storage {recorded}")


def record_blob_storage(serverdir: Path, url: str) -> None:
    """Remember ``url`` for this server dir (atomically; once)."""
    if recorded_blob_storage(serverdir) == url:
        return
    tmp = serverdir / f".{MARKER}.{os.getpid()}"
    tmp.write_text(url + "\n")
    os.replace(tmp, serverdir / MARKER)
