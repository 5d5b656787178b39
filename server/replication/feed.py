"""The primary's side: ``GET /+replica/changes`` and ``GET /+replica/blob/<sha256>``.

The changes feed is newline-delimited JSON, one line per serial after ``since``, in order:
``{"serial", "created", "who", "changes", "rows"}`` (the changelog row and the row images
of store/row_journal.py, as stored). One response is bounded (``MAX_SERIALS`` serials,
about ``MAX_BYTES`` bytes) and ends; a replica that has everything waits up to ``wait``
seconds (at most ``MAX_WAIT``) for the next commit in the same request, so a quiet primary
costs one request per ``MAX_WAIT`` per replica and a new upload reaches replicas at once.
The replica reconnects from its own serial, so a cut costs nothing but the reconnect.

A serial without its row images (written before migration 0009, or brought by an import)
cannot be replicated: 409; a fresh replica then bootstraps from ``GET /+replica/snapshot``
(snapshot_feed.py). A replica names the ``created`` time of its own last serial
(``at``): a primary whose serial of that number was written at another time has a history
the replica does not share (a replica promoted while the old primary had serials it never
sent): 409 rather than a silent fork. All endpoints need the shared secret or a token with
the replicate scope (secret.py): the feed holds every row of every index, read-restricted
or not.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import bottle
from sqlalchemy import select

from ..accounts.api_tokens import TOKEN_USER
from ..accounts.auth import Identity
from ..accounts.scope import REPLICATE
from ..api.files import serve_blob
from ..api.httpkit import APIError
from ..store import schema
from . import snapshot_feed
from .secret import HEADER, refusal

if TYPE_CHECKING:
    from ..core import Core

MAX_WAIT = 25.0  # seconds a caught-up replica's request waits for the next commit
DEFAULT_WAIT = MAX_WAIT
MAX_SERIALS = 1000  # serials per response
MAX_BYTES = 16 << 20  # bytes per response (the line that crosses it is the last)
READ_BATCH = 50  # serials read per database query while streaming
CONTENT_TYPE = "application/x-ndjson"
_SINCE = re.compile(r"-?[0-9]{1,18}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
NO_JOURNAL = ("the primary has no row images for serial {serial} (written before this version, or "
              "imported): a replica cannot follow from there; start the replica from an empty server dir "
              "(it bootstraps from a snapshot, see doc/replication.md)")
PROBLEM_HEADER = "X-Devpi-Replica-Problem"  # on a 409: why, for the replica (a snapshot helps only here)
NO_JOURNAL_CODE = "no-row-images"
FORKED = ("the replica's serial {serial} is not this primary's serial {serial} (written at another time): "
          "its database has a history this primary does not share (a former primary after a promotion?); "
          "start the replica from an empty server dir")


def parse_since(text: str | None) -> int:
    if text is None or text == "":
        return -1
    if not _SINCE.fullmatch(text) or int(text) < -1:
        raise APIError(400, f"since must be a serial (an integer from -1 on), not {text[:40]!r}")
    return int(text)


def parse_wait(text: str | None) -> float:
    if text is None or text == "":
        return DEFAULT_WAIT
    try:
        value = float(text) if len(text) <= 40 else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):  # false for nan too
        raise APIError(400, f"wait must be a non-negative number of seconds, not {text[:40]!r}")
    return min(value, MAX_WAIT)


def parse_at(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text) if len(text) <= 40 else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise APIError(400, f"at must be the time of the replica's serial, not {text[:40]!r}")
    return value


def read_entries(core: Core, since: int, limit: int) -> list[Any]:
    """Up to ``limit`` changelog rows after ``since`` with their row images (None if missing)."""
    cl, rr = schema.changelog, schema.replication_rows
    q = (select(cl.c.serial, cl.c.created, cl.c.who, cl.c.changes, rr.c.rows)
         .select_from(cl.outerjoin(rr, rr.c.serial == cl.c.serial))
         .where(cl.c.serial > since).order_by(cl.c.serial).limit(limit))
    with core.storage.read() as conn:
        return conn.execute(q).all()


def encode_line(row: Any) -> bytes:
    """One serial as a line; the stored JSON texts go out as they are (no re-encoding)."""
    import json

    return (f'{{"serial":{int(row.serial)},"created":{json.dumps(row.created)},"who":{json.dumps(row.who)},'
            f'"changes":{row.changes},"rows":{row.rows}}}\n').encode()


def stream(core: Core, since: int) -> Iterator[bytes]:
    """Lines from ``since`` on, until a bound, the end, or a serial that cannot be sent."""
    sent = size = 0
    expected = since + 1
    while sent < MAX_SERIALS and size < MAX_BYTES:
        rows = read_entries(core, expected - 1, min(READ_BATCH, MAX_SERIALS - sent))
        if not rows:
            return
        for row in rows:
            if row.serial != expected or row.rows is None:
                return  # the next request from here answers 409 and says why
            line = encode_line(row)
            yield line
            sent += 1
            size += len(line)
            expected += 1
            if size >= MAX_BYTES:
                return


def replicate_token_refusal(core: Core, value: str) -> str | None:
    """None if ``value`` is a live token with the replicate scope whose owner is (still) an admin."""
    row = core.api_tokens.check(TOKEN_USER, value)
    if row is None:
        return "the replication token is not valid (unknown, revoked or expired)"
    if REPLICATE not in row.actions:
        return "the token does not have the replicate scope"
    if not core.modify_policy.is_admin(Identity(row.owner)):
        return f"the token's owner {row.owner!r} is no longer an admin"
    return None


def install(app: bottle.Bottle, core: Core, secret: str | None) -> None:
    req = bottle.request

    def guard() -> None:
        refused = refusal(secret, req.get_header(HEADER), lambda value: replicate_token_refusal(core, value))
        if refused is not None:
            raise APIError(*refused)

    def changes() -> bottle.HTTPResponse:
        guard()
        since = parse_since(req.query.get("since"))
        wait = parse_wait(req.query.get("wait"))
        at = parse_at(req.query.get("at"))
        current = core.storage.current_serial
        if since > current:
            raise APIError(409, f"the replica is at serial {since}, beyond this primary's {current}: it "
                                "follows another server, or this one was restored from an older backup")
        if at is not None and since >= 0:
            mine = core.storage.changelog_entry(since)
            if mine is not None and float(mine["created"]) != at:
                raise APIError(409, FORKED.format(serial=since))
        if since == current and wait > 0:
            core.storage.wait_for_serial(since + 1, wait)
        first = read_entries(core, since, 1)
        if first and (first[0].serial != since + 1 or first[0].rows is None):
            raise APIError(409, NO_JOURNAL.format(serial=since + 1), {PROBLEM_HEADER: NO_JOURNAL_CODE})
        return bottle.HTTPResponse(stream(core, since), headers={
            "Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    def blob(sha256: str) -> bottle.HTTPResponse:
        guard()
        if not _SHA256.fullmatch(sha256):
            raise APIError(400, "a blob is named by its sha256: 64 lowercase hex digits")
        size = core.blobs.size(sha256)
        if size is None:
            raise APIError(404, f"no blob {sha256} on this primary")
        return serve_blob(core, sha256, sha256, size, time.time())

    app.route("/+replica/changes", "GET", changes)
    snapshot_feed.install(app, core, guard)
    app.route("/+replica/blob/<sha256>", ["GET", "HEAD"], blob)
    from . import mirror_feed

    mirror_feed.install(app, core, guard)  # the mirror cache and fetches for replicas, same secret
