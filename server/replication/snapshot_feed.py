"""The primary's side of a snapshot bootstrap: ``GET /+replica/snapshot`` (snapshot_format.py).

Every row is read in one read transaction (store/consistent_read.py, the one ``devpi
export`` uses), so the snapshot is exactly serial S however many uploads commit while it
streams; a replica then follows the feed from S. The transaction stays open while the
response streams, so at most ``MAX_CONCURRENT`` snapshots run at once (more: 503 with
Retry-After). Guarded by the shared secret like the feed: it holds every row of every
index and the server's login-token secret.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import bottle

from ..api.httpkit import APIError
from ..store import schema
from ..store.consistent_read import consistent_read, serial_of, table_rows
from ..store.row_journal import encode_value
from . import snapshot_format as fmt

if TYPE_CHECKING:
    from ..core import Core

MAX_CONCURRENT = 2  # snapshots streaming at once (each holds a read transaction open)
CONTENT_TYPE = "application/x-ndjson"


def _dump(obj: Any) -> bytes:
    line = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    if len(line) > fmt.MAX_LINE:  # cannot happen with the schema's column sizes; never sent half
        raise ValueError(f"a snapshot line of {len(line)} bytes")
    return line


def stream(core: Core, uuid: str) -> Iterator[bytes]:
    """The whole snapshot, read in one transaction (closed when the generator is)."""
    with consistent_read(core.storage) as conn:
        serial = serial_of(conn)
        tables = [{"name": name, "columns": list(schema.metadata.tables[name].c.keys())} for name in fmt.TABLES]
        yield _dump({"serial": serial, "uuid": uuid, "tables": tables})
        counts: dict[str, int] = {}
        for name in fmt.TABLES:
            n = 0
            for row in table_rows(conn, name):
                if name == "kv" and row[0] in fmt.SKIPPED_KV:
                    continue
                yield _dump({"t": name, "r": [encode_value(v) for v in row]})
                n += 1
            counts[name] = n
        yield _dump({"end": serial, "counts": counts})


class _Body:
    """The response body: gives the slot back once, when the server closes it (sent, or the
    replica hung up), even if it was never iterated."""

    def __init__(self, chunks: Iterator[bytes], slots: threading.Semaphore):
        self._chunks = chunks
        self._slots: threading.Semaphore | None = slots

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        try:
            self._chunks.close()  # type: ignore[attr-defined]
        finally:
            slots, self._slots = self._slots, None
            if slots is not None:
                slots.release()


def install(app: bottle.Bottle, core: Core, guard: Any) -> None:
    slots = threading.Semaphore(MAX_CONCURRENT)

    def snapshot() -> bottle.HTTPResponse:
        guard()
        if not slots.acquire(blocking=False):
            raise APIError(503, f"{MAX_CONCURRENT} snapshots are streaming already: try again later",
                           {"Retry-After": "30"})
        uuid = core.uuid or ""
        body = _Body(stream(core, uuid), slots)
        return bottle.HTTPResponse(body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store",
                                                  "X-Devpi-Uuid": uuid})

    app.route("/+replica/snapshot", "GET", snapshot)
