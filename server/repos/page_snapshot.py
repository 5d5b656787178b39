"""Rendered simple pages kept across a restart, stamped with the serial they are true at.

A restarted server would otherwise answer nothing until it has imported its SQL layer,
its web framework and its views (most of its start-up time). The running server
therefore keeps a file in the server dir with the simple pages of its page cache that
depend on the database alone (repos/page_snapshot_writer.py says which), stamped with the
serial and uuid of the database they were true at. At the next start the server answers
those pages at once (http/startup_lane.py), but only while the database's serial and uuid
(store/serial_peek.py) equal the stamp: after any commit, a crash before the file was
rewritten, or another database in place, the file is ignored and pages are rendered as
always. Correctness never depends on the file being current.

The file: one line of JSON (the stamp and an index of the pages), then the page bodies,
whose SHA-256 the JSON holds. It is replaced whole (written aside, synced, renamed), so a
reader sees the old file or the new one. The standard library reads it (json, hashlib):
nothing of the server's heavier parts is needed to serve from it.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from .simple_page_cache import CachedPage

FILE_NAME = "simple-pages.snapshot"
MAGIC = b"devpi-simple-pages 1\n"
MAX_BODY_BYTES = 4 << 20  # the pages kept in all; more are left out (the cache is the budget)
MAX_HEAD_BYTES = 1 << 20  # the JSON line (keys, ETags, headers of the pages)
MAX_PAGES = 2000

PageKey = tuple[str, str, str, str, str]  # the page cache's: user, index, project or "", format, link prefix


class PageSnapshot:
    """The pages of a snapshot file and the stamp they are true at."""

    def __init__(self, serial: int, uuid: str, pages: dict[PageKey, CachedPage], headers: dict[str, str],
                 open_root: bool = True):
        self.serial = serial
        self.uuid = uuid
        self.pages = pages  # as the page cache holds them: a cache filled from here serves them alike
        self.headers = list(headers.items())  # the server's own (X-Devpi-*), added to every answer
        self.open_root = open_root  # root's password was empty at that serial (or unknown)

    def get(self, key: tuple) -> CachedPage | None:
        return self.pages.get(key)


def dump(path: Path, *, serial: int, uuid: str, fingerprint: str, headers: dict[str, str],
         pages: Iterable[tuple[PageKey, CachedPage]], open_root: bool = True) -> int:
    """Replace the file at ``path`` with ``pages`` (bounded: see MAX_*), stamped; return
    how many were kept. ``headers`` are added to every page's own (the server's X-Devpi-*)."""
    index: list[list] = []
    bodies: list[bytes] = []
    total = head_size = 0
    for key, page in pages:
        body = page.body
        if body is None or len(index) >= MAX_PAGES:
            continue
        entry = [list(key), page.etag, page.extra, len(body)]
        size = len(json.dumps(entry))
        if total + len(body) > MAX_BODY_BYTES or head_size + size > MAX_HEAD_BYTES // 2:
            continue
        index.append(entry)
        bodies.append(body)
        total += len(body)
        head_size += size
    blob = b"".join(bodies)
    head = json.dumps({"serial": serial, "uuid": uuid, "fingerprint": fingerprint, "headers": headers,
                       "open_root": bool(open_root), "pages": index, "sha256": hashlib.sha256(blob).hexdigest()},
                      separators=(",", ":")).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + head + b"\n" + blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(index)


def load(path: Path, fingerprint: str) -> PageSnapshot | None:
    """The snapshot at ``path`` if it is whole and was written by this same server (version
    and plugins: ``fingerprint``); None otherwise. Its stamp is for the caller to check."""
    try:
        with open(path, "rb") as f:
            data = f.read(len(MAGIC) + MAX_HEAD_BYTES + MAX_BODY_BYTES + 2)
    except OSError:
        return None
    if not data.startswith(MAGIC):
        return None
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        return None
    try:
        head = json.loads(data[len(MAGIC):end])
        blob = data[end + 1:]
        if head["fingerprint"] != fingerprint or hashlib.sha256(blob).hexdigest() != head["sha256"]:
            return None
        headers = {str(k): str(v) for k, v in head["headers"].items()}
        pages: dict[PageKey, CachedPage] = {}
        offset = 0
        for key, etag, extra, length in head["pages"]:
            body = blob[offset:offset + length]
            offset += length
            if len(key) != 5 or len(body) != length:
                return None
            pages[tuple(str(k) for k in key)] = CachedPage(body, str(etag), dict(extra), None)
        if offset != len(blob):
            return None
        return PageSnapshot(int(head["serial"]), str(head["uuid"]), pages, headers, head["open_root"] is not False)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
