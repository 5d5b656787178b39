"""What a replica accepts from its primary's feed: bounded lines, each one well-formed serial.

The primary is trusted with the data (it is the primary), but not with the replica's
health: a line without end must not fill the memory, and a line that is not what
feed.py writes must be refused before anything of it is stored. Each line is checked
for shape here; what its rows say is checked while applying them (unknown tables and
columns, a serial that is not the next one: ``Storage.apply_replicated``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_LINE = 64 << 20  # bytes of one serial's line (a push of a big release is a few MiB)
MAX_WHO = 1000  # characters of a changelog entry's author
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BadFeed(ValueError):
    """The primary sent something a replica does not take."""


@dataclass
class Entry:
    serial: int
    created: float
    who: str | None
    changes: list[dict[str, Any]]
    rows: list[dict[str, Any]]

    def blobs(self) -> list[tuple[str, int]]:
        """(sha256, size) of the blobs this serial's files name (the file and its core
        metadata), which the replica fetches."""
        out = []
        for image in self.rows:
            row = image.get("row")
            if image.get("t") == "files" and isinstance(row, dict):
                sha, size = row.get("sha256"), row.get("size")
                if isinstance(sha, str) and _SHA256.fullmatch(sha):
                    out.append((sha, size if isinstance(size, int) and size >= 0 else 0))
                meta = row.get("core_metadata_sha256")  # PEP 658's .metadata: its own blob, size unknown
                if isinstance(meta, str) and _SHA256.fullmatch(meta):
                    out.append((meta, 0))
        return out


def lines(chunks: Iterable[bytes], limit: int = MAX_LINE) -> Iterator[bytes]:
    """Complete lines from a byte stream, refusing one longer than ``limit``. A last piece
    without its newline is a cut connection, not a line: dropped (the next request from the
    replica's serial sends it again)."""
    buf = bytearray()
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                buf += chunk[start:]
                if len(buf) > limit:
                    raise BadFeed(f"a line of the feed is longer than {limit} bytes")
                break
            if len(buf) + end - start > limit:
                raise BadFeed(f"a line of the feed is longer than {limit} bytes")
            buf += chunk[start:end]
            yield bytes(buf)
            buf.clear()
            start = end + 1


def parse(line: bytes) -> Entry:
    try:
        doc = json.loads(line)
    except ValueError as e:
        raise BadFeed(f"a line of the feed is not JSON: {e}") from None
    if not isinstance(doc, dict) or set(doc) != {"serial", "created", "who", "changes", "rows"}:
        raise BadFeed("a line of the feed is not a serial (serial, created, who, changes, rows)")
    serial, created, who, changes, rows = (doc[k] for k in ("serial", "created", "who", "changes", "rows"))
    if type(serial) is not int or serial < 0:
        raise BadFeed(f"not a serial: {str(serial)[:40]!r}")
    if type(created) not in (int, float):
        raise BadFeed(f"serial {serial}: created is not a time")
    if who is not None and (not isinstance(who, str) or len(who) > MAX_WHO):
        raise BadFeed(f"serial {serial}: who is not a name")
    if not isinstance(changes, list) or not changes or not all(isinstance(c, dict) for c in changes):
        raise BadFeed(f"serial {serial}: changes is not a list of changes")
    if not isinstance(rows, list):
        raise BadFeed(f"serial {serial}: rows is not a list")
    for image in rows:
        if not isinstance(image, dict) or not isinstance(image.get("t"), str) or \
                not isinstance(image.get("k"), list) or not set(image) <= {"t", "k", "row"} or \
                ("row" in image and not isinstance(image["row"], dict)):
            raise BadFeed(f"serial {serial}: a row image is not {{t, k[, row]}}")
        for value in [*image["k"], *(image.get("row") or {}).values()]:
            if isinstance(value, (list, dict)) and not (isinstance(value, dict) and set(value) == {"b64"}):
                raise BadFeed(f"serial {serial}: a column value of {image['t']} is not a scalar")
    return Entry(serial, float(created), who, changes, rows)


def rows_refused(e: Exception) -> str | None:
    """Why the database refused rows a primary sent (a wrong type, a broken constraint), or
    None when ``e`` is not the database's: the follower and the snapshot both say it so."""
    if type(e).__module__.startswith("sqlalchemy"):
        return f"the rows do not fit: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
    return None
