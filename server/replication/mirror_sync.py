"""A replica's copy of the primary's mirror cache: polled from ``/+replica/mirror-cache`` (mirror_feed.py).

The cache takes no serials, so it cannot ride the changes feed. It is asked for by time
instead: for each table, the rows whose ``fetched``/``created`` is at least the newest
the replica holds (its own tables hold the primary's times: it stores the primary's rows
as they are), less ``OVERLAP`` seconds, because the primary's mirror writer commits a row
a moment after it took its time, and a row committed late would otherwise be passed by.
Rows re-sent that way are skipped when the replica's copy is as new. After a restart the
cursor is found again the same way (nothing of it is kept but the tables themselves).

A page row is stored at once (through the mirror store's writer, the one the mirror uses);
a file row only once its bytes are here: the blob fetcher (blob_fetch.py) fetches them by
sha256, hash-checked, and the row follows (blobs before the rows that name them). A row
for an index the replica has not got yet (the serial that makes it is still on its way)
stops that table's round; it is asked for again at the next.

Pages the primary deleted (its upstream said 404) are not sent: the replica's copy goes
when it expires and the primary, asked for it, has none. A file that fails (the primary
cannot send it) is named in /+status under ``mirrors.failing`` and never stored.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import requests
from sqlalchemy import func, select

from ..store import schema
from .mirror_rows import CHECKS, BadRow
from .secret import HEADER

if TYPE_CHECKING:
    from ..core import Core
    from .blob_fetch import BlobFetcher
    from .state import ReplicaState

log = logging.getLogger("devpi.server.replication")
POLL = 3.0  # seconds between rounds when the replica has everything
OVERLAP = 30.0  # seconds of rows asked for again each round (see the module's docstring)
ROUND_REQUESTS = 50  # requests per table per round (each at most 16 MiB)
CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 120.0
MAX_ANSWER = 200 << 20  # bytes of one answer (one row may be a 128 MiB project list)
MAX_WAITING = 100_000  # file rows waiting for their bytes; beyond it the on-demand path fetches them
MAX_FAILING = 50  # failures shown in /+status (all are counted)
TIME_COLUMN = {"pages": "fetched", "files": "created", "lists": "fetched"}
KEY = {"pages": ("index_id", "project"), "files": ("index_id", "relpath"), "lists": ("index_id",)}
TABLE = {"pages": schema.mirror_pages, "files": schema.mirror_files, "lists": schema.mirror_lists}


class MirrorSyncState:
    """What /+status says about the mirror cache sync, and the mirror files that failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cursors: dict[str, float | None] = dict.fromkeys(TABLE)
        self.rows: dict[str, int] = dict.fromkeys(TABLE, 0)  # rows stored since the start
        self.synced_at: float | None = None  # the end of the last complete round
        self.last_error: str | None = None
        self.failing: dict[str, dict[str, Any]] = {}  # what -> reason, at, attempts
        self.waiting_files = 0

    def failed(self, what: str, reason: str) -> None:
        with self._lock:
            before = self.failing.pop(what, None)
            self.failing[what] = {"reason": reason[:300], "at": time.time(),
                                  "attempts": (before["attempts"] + 1) if before else 1}
            while len(self.failing) > 10 * MAX_FAILING:
                self.failing.pop(next(iter(self.failing)))
        log.warning("replica mirror: %s: %s", what, reason[:300])

    def recovered(self, what: str) -> None:
        with self._lock:
            self.failing.pop(what, None)

    def status(self) -> dict[str, Any]:
        with self._lock:
            failing = list(self.failing.items())[-MAX_FAILING:]
            return {"mode": "through the primary", "cursors": dict(self.cursors), "rows_synced": dict(self.rows),
                    "synced_at": self.synced_at, "last_error": self.last_error,
                    "waiting_files": self.waiting_files, "failing_count": len(self.failing),
                    "failing": [{"what": w, **f} for w, f in reversed(failing)]}


class MirrorSync:
    def __init__(self, core: Core, primary_url: str, secret: str, replica: ReplicaState, blobs: BlobFetcher,
                 state: MirrorSyncState):
        self.core = core
        self.url = primary_url.rstrip("/") + "/+replica/mirror-cache"
        self.secret = secret
        self.replica = replica
        self.blobs = blobs
        self.state = state
        self._session = requests.Session()
        self._stopping = threading.Event()
        self._waiting: dict[tuple[int, str], dict[str, Any]] = {}  # file rows whose bytes are on their way
        self._newest: dict[str, float] = {}  # table -> the newest time seen (read from SQL once)
        self._by_id: dict[int, Any] = {}  # the indexes by id (sync_once)

    def start(self) -> None:
        threading.Thread(target=self._run, name="replica-mirror-sync", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sync_once()
                with self.state._lock:
                    self.state.synced_at = time.time()
                    self.state.last_error = None
            except Exception as e:  # the primary away, or a refused answer: ask again next round
                message = str(e) if isinstance(e, (SyncError, BadRow)) else f"internal error: {type(e).__name__}"
                if not isinstance(e, (SyncError, BadRow)):
                    log.exception("replica mirror sync failed")
                with self.state._lock:
                    self.state.last_error = message
            if self._stopping.wait(POLL):
                return

    # -- one round -------------------------------------------------------------------------
    def sync_once(self) -> None:
        # the indexes by id, read once a round (an index whose serial arrives meanwhile is
        # found at the next round, as a row for an index not here yet always is)
        self._by_id = {ix.id: ix for ix in list(self.core.indexes().values())}
        self._store_arrived_files()
        for table in ("pages", "files", "lists"):
            self._sync_table(table)
        self._store_arrived_files()

    def _local_cursor(self, table: str) -> float:
        newest = self._newest.get(table)
        if newest is None:  # after a start: the replica's tables hold the primary's times
            col = TABLE[table].c[TIME_COLUMN[table]]
            with self.core.storage.read() as conn:
                newest = self._newest[table] = float(conn.execute(select(func.max(col))).scalar() or 0.0)
        return max(0.0, newest - (0.0 if table == "lists" else OVERLAP)) if newest else 0.0

    def _sync_table(self, table: str) -> None:
        since, key = self._local_cursor(table), None
        with self.state._lock:
            self.state.cursors[table] = since
        for _ in range(ROUND_REQUESTS):
            rows, more = self._ask(table, since, key)
            done = self._apply(table, rows)
            if done < len(rows):
                return  # a row for an index not here yet: from it again next round
            if rows:
                last = rows[-1]
                since, key = last[TIME_COLUMN[table]], [last[k] for k in KEY[table]]
                self._newest[table] = max(self._newest.get(table, 0.0), since)
            if not more:
                return

    def _ask(self, table: str, since: float, key: list[Any] | None) -> tuple[list[dict[str, Any]], bool]:
        params: dict[str, Any] = {"table": table, "since": repr(since)}
        if key is not None:
            params["key"] = json.dumps(key)
        try:
            with self._session.get(self.url, params=params, headers={HEADER: self.secret}, stream=True,
                                   timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False) as resp:
                body = resp.raw.read(MAX_ANSWER + 1, decode_content=True)
        except (requests.RequestException, OSError) as e:
            raise SyncError(f"cannot reach the primary: {type(e).__name__}") from None
        if resp.status_code != 200:
            raise SyncError(f"the primary answered {resp.status_code} for the mirror cache")
        if len(body) > MAX_ANSWER:
            raise SyncError(f"refused from the primary: a mirror cache answer larger than {MAX_ANSWER} bytes")
        try:
            doc = json.loads(body)
        except ValueError:
            raise SyncError("refused from the primary: the mirror cache answer is not JSON") from None
        if not isinstance(doc, dict) or set(doc) != {"table", "rows", "more"} or doc["table"] != table or \
                not isinstance(doc["rows"], list) or not isinstance(doc["more"], bool):
            raise SyncError("refused from the primary: the mirror cache answer is not {table, rows, more}")
        try:
            rows = [CHECKS[table](row) for row in doc["rows"]]  # all checked before any is stored
        except BadRow as e:
            raise SyncError(f"refused from the primary: a {table} row: {e}") from None
        return rows, doc["more"]

    def _repo(self, index_id: int) -> Any:
        """The mirror's repository; False for an index that is no mirror, None for none here."""
        ix = self._by_id.get(index_id)
        if ix is None:
            return None
        return self.core.single_repository(ix) if ix.type == "mirror" else False

    def _apply(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Store the rows newer than the replica's (files: queue their bytes); how many were taken."""
        repos: dict[int, Any] = {}
        touched: list[tuple[Any, dict[str, Any]]] = []
        for n, row in enumerate(rows):
            ix_id = row["index_id"]
            if ix_id not in repos:
                repos[ix_id] = self._repo(ix_id)
            repo = repos[ix_id]
            if repo is None:
                self._flush(table, touched)
                return n
            if repo is False:  # no longer a mirror here (changed meanwhile): nothing to keep
                continue
            if table == "pages":
                local = repo.store.load_page(row["project"])
                if local is not None and local.fetched >= row["fetched"]:
                    continue
                repo.store.save_page(row["project"], row["url"], json.loads(row["links"]), row["etag"],
                                     row["last_modified"], row["serial"], row["fetched"])
            elif table == "lists":
                local = repo.store.load_list()
                if local is not None and local.fetched >= row["fetched"]:
                    continue
                repo.store.save_list(row["names"], row["etag"], row["serial"], row["fetched"])
            else:
                local = repo.store.load_file(row["relpath"])
                if local is not None and local.sha256 == row["sha256"] and local.created >= row["created"]:
                    continue
                self._wait_for_bytes(row)
                continue
            touched.append((repo, row))
        self._flush(table, touched)
        return len(rows)

    def _flush(self, table: str, touched: list[tuple[Any, dict[str, Any]]]) -> None:
        from ..mirror import through_primary

        if not touched:
            return
        touched[0][0].store.flush()  # one writer per storage: every mirror's rows are committed
        for repo, row in touched:
            if table == "pages":
                through_primary.synced_page(repo, row["project"])
            elif table == "lists":
                through_primary.synced_list(repo)
            else:
                through_primary.synced_file(repo, row["relpath"])
        with self.state._lock:
            self.state.rows[table] += len(touched)

    # -- files: their bytes first, then the row ---------------------------------------------------
    def _wait_for_bytes(self, row: dict[str, Any]) -> None:
        key = (row["index_id"], row["relpath"])
        if key not in self._waiting and len(self._waiting) >= MAX_WAITING:
            return  # asked for on demand when someone wants it
        self._waiting[key] = row
        self.blobs.enqueue(0, row["sha256"], row["size"])

    def _store_arrived_files(self) -> None:
        touched = []
        failing = self.blobs.failing_reasons()
        for key, row in list(self._waiting.items()):
            what = self._name(row)
            if self.core.blobs.exists(row["sha256"]):
                repo = self._repo(row["index_id"])
                del self._waiting[key]
                if repo:
                    repo.store.save_file(row["relpath"], row["project"], row["filename"], row["sha256"],
                                         row["size"], row["created"], row["url"])
                    touched.append((repo, row))
                self.state.recovered(what)
            elif row["sha256"] in failing:
                self.state.failed(what, f"its bytes did not come: {failing[row['sha256']]}")
        self._flush("files", touched)
        with self.state._lock:
            self.state.waiting_files = len(self._waiting)

    def _name(self, row: dict[str, Any]) -> str:
        ix = self._by_id.get(row["index_id"])
        return f"{ix.fullname}/{row['relpath']}" if ix is not None else f"{row['index_id']}:{row['relpath']}"


class SyncError(Exception):
    """A mirror cache answer that could not be used (nothing of it was stored)."""
