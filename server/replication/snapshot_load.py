"""The replica's side of a snapshot bootstrap: read ``GET <primary>/+replica/snapshot`` and
load it into the empty database in one transaction (snapshot_format.py has the format).

The primary is trusted with the data, not with the replica's health: each line is bounded
(``MAX_LINE``), the header must name replicated tables with known columns in foreign-key
order, each row must be a list of scalars as long as its table's columns, rows come table
by table in the header's order, and the stream must end with the line that counts them
(a cut-off stream has none; a count that differs means rows went missing). Anything wrong
raises inside the loading transaction (Storage.load_snapshot), so the database stays empty
and the next start begins again.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import requests

from ..store import snapshot_apply
from ..store.row_journal import JournalError
from ..store.storage import SnapshotRefused, kv_get
from . import snapshot_format as fmt
from .entry import BadFeed, lines, rows_refused
from .secret import HEADER

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ..core import Core

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0  # seconds without a byte (the primary streams as it reads)
CHUNK = 1 << 20
_UUID = re.compile(r"[0-9a-f]{32}")
_SCALARS = (str, int, float, bool, type(None))


class SnapshotFailed(Exception):
    """The snapshot could not be taken; the message is one line. ``unreachable``: the primary
    could not be asked at all."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def _json(line: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(line)
    except ValueError:
        raise BadFeed(f"the snapshot's {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise BadFeed(f"the snapshot's {what} is not an object")
    return doc


def parse_header(line: bytes | None) -> tuple[int, str, dict[str, list[str]]]:
    """(serial, uuid, table -> columns) of the first line; BadFeed or JournalError if it is wrong."""
    if line is None:
        raise BadFeed("the snapshot was cut off before its header")
    doc = _json(line, "header")
    serial, tables = doc.get("serial"), doc.get("tables")
    if set(doc) != {"serial", "uuid", "tables"} or type(serial) is not int or serial < 0 \
            or not isinstance(doc["uuid"], str) or not _UUID.fullmatch(doc["uuid"]) or not isinstance(tables, list):
        raise BadFeed("the snapshot's header is not {serial, uuid, tables}")
    columns: dict[str, list[str]] = {}
    for spec in tables:
        if not isinstance(spec, dict) or set(spec) != {"name", "columns"}:
            raise BadFeed("a table of the snapshot's header is not {name, columns}")
        snapshot_apply.table_for(spec["name"], spec["columns"])
        if spec["name"] in columns:
            raise BadFeed(f"the snapshot names table {spec['name']} twice")
        columns[spec["name"]] = spec["columns"]
    order = [name for name in fmt.TABLES if name in columns]
    if list(columns) != order:
        raise BadFeed("the snapshot's tables are not in foreign-key order")
    return serial, doc["uuid"], columns


class Rows:
    """The row lines after the header, checked; ``counts`` of the end line once read."""

    def __init__(self, lines: Iterator[bytes], serial: int, columns: dict[str, list[str]]):
        self._lines = lines
        self.serial = serial
        self.columns = columns
        self.counts: dict[str, int] | None = None

    def __iter__(self) -> Iterator[tuple[str, list[Any]]]:
        order = list(self.columns)
        at = 0
        for line in self._lines:
            doc = _json(line, "row")
            if "end" in doc:
                self._end(doc)
                break
            name, values = doc.get("t"), doc.get("r")
            if set(doc) != {"t", "r"} or not isinstance(name, str) or not isinstance(values, list):
                raise BadFeed("a line of the snapshot is not a row {t, r}")
            if name not in self.columns:
                raise JournalError(f"a row of a table the snapshot's header does not name: {name[:100]!r}")
            while order[at] != name:  # tables come in the header's order, each once
                at += 1
                if at == len(order):
                    raise BadFeed(f"the snapshot's rows of {name} come after those of a later table")
            if len(values) != len(self.columns[name]):
                raise BadFeed(f"a row of {name} has {len(values)} values for {len(self.columns[name])} columns")
            for v in values:
                if not isinstance(v, _SCALARS) and not (isinstance(v, dict) and set(v) == {"b64"}
                                                        and isinstance(v["b64"], str)):
                    raise BadFeed(f"a value of a row of {name} is not a scalar")
            yield name, values
        if self.counts is None:
            raise BadFeed("the snapshot was cut off (no end line)")
        if next(self._lines, None) is not None:
            raise BadFeed("the snapshot goes on after its end line")

    def _end(self, doc: dict[str, Any]) -> None:
        counts = doc.get("counts")
        if set(doc) != {"end", "counts"} or doc["end"] != self.serial or not isinstance(counts, dict) \
                or set(counts) != set(self.columns) or not all(type(n) is int for n in counts.values()):
            raise BadFeed("the snapshot's end line is not {end: its serial, counts of its tables}")
        self.counts = counts

    def check_counts(self, loaded: dict[str, int]) -> None:
        assert self.counts is not None
        for name, expected in self.counts.items():
            if loaded.get(name, 0) != expected:
                raise BadFeed(f"the snapshot's end line counts {expected} rows of {name}, it sent "
                              f"{loaded.get(name, 0)}")


def fetch_and_load(core: Core, primary_url: str, secret: str, session: requests.Session,
                   replacing: int | None = None) -> int:
    """Take the primary's snapshot into the empty database, or over this replica's state at
    serial ``replacing`` (the same server's: the same uuid); its serial. SnapshotFailed (one
    line) with nothing stored or changed if anything is wrong."""
    url = primary_url.rstrip("/") + "/+replica/snapshot"
    try:
        resp = session.get(url, headers={HEADER: secret, "Accept": "application/x-ndjson"}, stream=True,
                           timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False)
    except requests.RequestException as e:
        raise SnapshotFailed(f"cannot reach the primary at {primary_url}: {type(e).__name__}",
                             unreachable=True) from None
    with resp:
        if resp.status_code != 200:
            from .follower import _message

            raise SnapshotFailed(f"the primary answered {resp.status_code} for its snapshot: {_message(resp)}")
        try:
            stream = lines(resp.iter_content(CHUNK), fmt.MAX_LINE)
            serial, uuid, columns = parse_header(next(stream, None))
            rows = Rows(stream, serial, columns)

            if replacing is not None:  # (before the server reads the database: nothing writes meanwhile)
                with core.storage.read() as conn:
                    mine = kv_get(conn, "uuid")
                if mine != uuid:
                    raise SnapshotRefused(f"the snapshot is of another server (uuid {uuid}, this replica's "
                                          f"is {mine})")

            def load(conn: Connection) -> None:
                rows.check_counts(snapshot_apply.load(conn, columns, rows))

            core.storage.load_snapshot(serial, load, replacing)
        except (BadFeed, JournalError, SnapshotRefused) as e:
            raise SnapshotFailed(f"snapshot refused: {e}") from None
        except requests.RequestException as e:
            raise SnapshotFailed(f"the connection broke during the snapshot: {type(e).__name__}",
                                 unreachable=True) from None
        except Exception as e:
            why = rows_refused(e)
            if why is None:
                raise
            raise SnapshotFailed(f"snapshot refused: {why}") from None
    return serial
