"""The primary's side of mirror replication: its mirror cache, and pages and files fetched for a replica.

A mirror's cache (``mirror_pages``, ``mirror_files``, ``mirror_lists``) is upstream's data:
it takes no serial and is not in the changes feed (feed.py). Replicas get it here:

- ``GET /+replica/mirror-cache?table=pages|files|lists&since=T[&key=K]``: the rows whose
  time column (``fetched``, ``created``) is at least ``T`` (with ``key``, the JSON list of
  the last row's key: the rows after that one), oldest first, as JSON
  ``{"table", "rows": [...], "more"}``. A response holds at most ``MAX_ROWS`` rows and
  about ``MAX_BYTES`` bytes (the row that crosses it is the last; one row is always sent);
  ``more`` says the replica should ask again at once from the last row.
- ``GET /+replica/mirror/<user>/<index>/+page/<project>``: ``{"page": row|null}``, the
  page as this primary's mirror has it, fetched from its upstream now if it must be (null:
  upstream has no such project);
- ``GET /+replica/mirror/<user>/<index>/+file/<relpath>``: ``{"file": row}``, downloaded and
  hash-checked from upstream now if need be; the bytes then come from ``/+replica/blob/``.

All three need the shared secret (secret.py): a read-restricted mirror's data goes to a
replica like every other row of the feed, and a caller without the secret must not make
the primary fetch from its upstream.
"""
from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import bottle
from sqlalchemy import select, tuple_

from ..api.httpkit import JSON_CT, APIError, json_body
from ..store import schema

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core import Core

MAX_ROWS = 500  # rows per response
MAX_BYTES = 16 << 20  # bytes per response (the row that crosses it is the last)
READ_BATCH = 25  # rows read per query (a page row can be megabytes)
MAX_RELPATH = 600  # mirror_files.relpath's column size
FILE_WAIT = 3600.0  # seconds a replica's request waits for a file the primary downloads for it

# table -> (schema table, time column, key columns, columns sent)
TABLES: dict[str, tuple[Any, str, tuple[str, ...], tuple[str, ...]]] = {
    "pages": (schema.mirror_pages, "fetched", ("index_id", "project"),
              ("index_id", "project", "url", "links", "etag", "last_modified", "serial", "fetched")),
    "files": (schema.mirror_files, "created", ("index_id", "relpath"),
              ("index_id", "relpath", "project", "filename", "sha256", "size", "created", "url")),
    "lists": (schema.mirror_lists, "fetched", ("index_id",), ("index_id", "names", "etag", "serial", "fetched")),
}
_RELPATH = re.compile(r"\+[fe]/[^\x00-\x20\x7f\\]+")


def parse_cursor(table: str, since: str | None, key: str | None) -> tuple[float, list[Any] | None]:
    try:
        ts = float(since) if since and len(since) <= 40 else 0.0 if not since else math.nan
    except ValueError:
        ts = math.nan
    if not math.isfinite(ts):
        raise APIError(400, f"since must be a time (seconds), not {str(since)[:40]!r}")
    if not key:
        return ts, None
    names = TABLES[table][2]
    try:
        parsed = json.loads(key) if len(key) <= 2000 else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, list) or len(parsed) != len(names) or not all(
            (type(v) is int) if n == "index_id" else isinstance(v, str) for n, v in zip(names, parsed, strict=True)):
        raise APIError(400, f"key must be the JSON list of a {table} row's key ({', '.join(names)})")
    return ts, parsed


def read_rows(core: Core, table: str, since: float, key: list[Any] | None) -> tuple[list[dict[str, Any]], bool]:
    """The rows after the cursor, bounded; and whether more are left."""
    t, ts_name, key_names, columns = TABLES[table]
    ts_col, key_cols = t.c[ts_name], [t.c[n] for n in key_names]
    out: list[dict[str, Any]] = []
    size = 0
    while len(out) < MAX_ROWS and size < MAX_BYTES:
        if key is None:
            where = ts_col >= since
        else:
            where = tuple_(ts_col, *key_cols) > tuple_(since, *key)
        q = (select(*[t.c[c] for c in columns]).where(where).order_by(ts_col, *key_cols)
             .limit(min(READ_BATCH, MAX_ROWS - len(out))))
        with core.storage.read() as conn:
            batch = [dict(r._mapping) for r in conn.execute(q)]
        if not batch:
            return out, False
        for row in batch:
            out.append(row)
            size += sum(len(v) if isinstance(v, str) else 8 for v in row.values())
            if size >= MAX_BYTES:
                break
        last = out[-1]
        since, key = last[ts_name], [last[n] for n in key_names]
    return out, True


def _mirror_repo(core: Core, user: str, index: str) -> Any:
    ix = core.get_index(user, index)
    if ix is None or ix.type != "mirror":
        raise APIError(404, f"no mirror index {user}/{index} on this primary")
    return core.single_repository(ix)


def _reply(doc: dict[str, Any]) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(json_body(doc), headers={"Content-Type": JSON_CT, "Cache-Control": "no-store"})


def install(app: bottle.Bottle, core: Core, guard: Callable[[], None]) -> None:
    """The routes; ``guard`` raises the feed's 404/401/403 for a caller without the secret."""
    from ..mirror import through_primary

    req = bottle.request

    def cache() -> bottle.HTTPResponse:
        guard()
        table = req.query.get("table") or ""
        if table not in TABLES:
            raise APIError(400, f"table must be one of {', '.join(TABLES)}")
        since, key = parse_cursor(table, req.query.get("since"), req.query.get("key"))
        rows, more = read_rows(core, table, since, key)
        return _reply({"table": table, "rows": rows, "more": more})

    def page(user: str, index: str, project: str) -> bottle.HTTPResponse:
        guard()
        if len(project) > 200:
            raise APIError(400, "a project name has at most 200 characters")
        return _reply({"page": through_primary.page_row(_mirror_repo(core, user, index), project)})

    def file(user: str, index: str, relpath: str) -> bottle.HTTPResponse:
        guard()
        if len(relpath) > MAX_RELPATH or not _RELPATH.fullmatch(relpath) or "/../" in f"/{relpath}/" \
                or "//" in relpath:
            raise APIError(400, "not a mirror file path (+f/... or +e/...)")
        repo = _mirror_repo(core, user, index)
        return _reply({"file": through_primary.file_row(repo, relpath, FILE_WAIT)})

    app.route("/+replica/mirror-cache", "GET", cache)
    app.route("/+replica/mirror/<user>/<index>/+page/<project>", "GET", page)
    app.route("/+replica/mirror/<user>/<index>/+file/<relpath:path>", "GET", file)
