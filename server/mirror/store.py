"""The mirror's SQL: stored pages, cached files and upstream's project list.

Reads are plain queries. Writes are queued and committed by one writer
thread, many per transaction: a commit costs an fsync (several ms on a busy
disk), and a client waiting for a freshly fetched page must not wait for it.
The mirror keeps what it queued in memory, so nothing reads the queue's
contents back from SQL before they land (``flush`` waits when it must).
The cache is upstream's data, not a change made here: no serial, no changelog.

A write is queued as data (a statement and its parameters), not as code, so that
a batch runs as one ``executemany`` per statement: rows are upserted (``INSERT
... ON CONFLICT DO UPDATE``, which SQLite and PostgreSQL both speak), and a cold
install's fifty rows cost two calls into SQLAlchemy instead of a hundred.
"""
from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import Executable

from ..store import schema
from ..store.storage import Storage

log = logging.getLogger("devpi.server.mirror")
Write = tuple[int, Executable, dict[str, Any]]  # (index whose cache it updates, statement, parameters)

pages, files, lists = schema.mirror_pages, schema.mirror_files, schema.mirror_lists
COALESCE = 0.05  # seconds the writer waits after the first queued write before committing

# Built once: a statement built per call costs five times what running it does (SQLAlchemy
# derives its cache key from the whole expression), and a cold install runs a hundred.
_ix = bindparam("index_id")
_load_page = select(pages).where(pages.c.index_id == _ix, pages.c.project == bindparam("project"))
_delete_page = delete(pages).where(pages.c.index_id == _ix, pages.c.project == bindparam("project"))
_touch_page = (update(pages).where(pages.c.index_id == bindparam("key_index_id"),
                                   pages.c.project == bindparam("key_project"))
               .values(fetched=bindparam("new_fetched"), etag=bindparam("new_etag"),
                       last_modified=bindparam("new_last_modified")))
_page_names = select(pages.c.project).where(pages.c.index_id == _ix)
_load_file = select(files).where(files.c.index_id == _ix, files.c.relpath == bindparam("relpath"))
_cached_relpaths = select(files.c.relpath).where(files.c.index_id == _ix, files.c.project == bindparam("project"))
_load_list = select(lists).where(lists.c.index_id == _ix)
_index_row = select(schema.indexes.c.id).where(schema.indexes.c.id == _ix)
_TABLE_ORDER = {pages.name: 0, files.name: 1, lists.name: 2}
_upserts: dict[tuple[str, str], Executable] = {}


def _upsert(storage: Storage, table: Table) -> Executable:
    """INSERT, or UPDATE the row with that primary key: one statement that any number of
    rows can share in one executemany (a DELETE then INSERT pair cannot)."""
    dialect = "sqlite" if storage.is_sqlite else "postgresql"
    stmt = _upserts.get((dialect, table.name))
    if stmt is None:
        if storage.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        ins = dialect_insert(table)
        stmt = ins.on_conflict_do_update(index_elements=[c.name for c in table.primary_key.columns],
                                         set_={c.name: ins.excluded[c.name] for c in table.c if not c.primary_key})
        _upserts[(dialect, table.name)] = stmt
    return stmt


def _row_order(write: Write) -> tuple[int, int, str]:
    """Where a write goes in its batch: by table, then by the row it changes. Every process
    then takes row locks in the same order (PostgreSQL), so two batches with rows in
    common wait for each other instead of deadlocking."""
    index_id, stmt, params = write
    row = params.get("project") or params.get("key_project") or params.get("relpath") or ""
    return _TABLE_ORDER.get(stmt.table.name, 9), index_id, row


def _runs(writes: list[Write]) -> list[tuple[Executable, list[dict[str, Any]]]]:
    """The batch as (statement, [parameters, ...]) runs: sorted by table and row
    (``_row_order``), writes to one row in queue order (the sort is stable: a refresh of a
    page must land after the page itself), then consecutive writes of one statement
    together."""
    out: list[tuple[Executable, list[dict[str, Any]]]] = []
    for _, stmt, params in sorted(writes, key=_row_order):
        if out and out[-1][0] is stmt:
            out[-1][1].append(params)
        else:
            out.append((stmt, [params]))
    return out


class _Call:
    """Queued like a flush's event: its ``set`` runs a function once the writes before it
    are committed."""

    def __init__(self, fn: Callable[[], None]):
        self.fn = fn

    def set(self) -> None:
        try:
            self.fn()
        except Exception:
            log.exception("a call after the mirror cache's commit failed")


class _Writer:
    """One thread that commits queued writes in batches (shared by all mirrors of a storage)."""

    def __init__(self, storage: Storage):
        self.storage = storage
        # a write, or, from flush, (None, event to set)
        self._queue: queue.Queue[tuple[Write | None, threading.Event | _Call | None]] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="mirror-writer", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def put(self, index_id: int, stmt: Executable, params: dict[str, Any]) -> None:
        """Queue a write to the cache of index ``index_id``."""
        self._queue.put(((index_id, stmt, params), None))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is committed."""
        done = threading.Event()
        self._queue.put((None, done))
        done.wait(timeout)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (in the writer thread) once everything queued so far is committed,
        without waiting for it here."""
        self._queue.put((None, _Call(fn)))

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0][0] is not None:
                time.sleep(COALESCE)  # a burst of cold requests: one commit for many of them
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes = [write for write, _ in batch if write is not None]
            try:
                if writes:
                    with self.storage.cache_write() as conn:
                        for stmt, many in _runs(writes):
                            conn.execute(stmt, many)
            except Exception:
                self._one_by_one(writes)
            for _, done in batch:
                if done is not None:
                    done.set()

    def _one_by_one(self, writes: list[Write]) -> None:
        """A batch failed as a whole: commit each write on its own, so that one that cannot
        land (its index was deleted after the fetch, a foreign key then refuses the row)
        does not take the others with it."""
        for index_id, stmt, params in writes:
            try:
                with self.storage.cache_write() as conn:
                    conn.execute(stmt, params)
            except IntegrityError as e:
                if not self._index_exists(index_id):
                    log.info("mirror: dropped a cache update for an index deleted meanwhile")
                else:
                    log.error("mirror: could not store a cache update: %s", e)
            except Exception:
                log.exception("mirror: could not store a cache update")

    def _index_exists(self, index_id: int) -> bool:
        with self.storage.read() as conn:
            return conn.execute(_index_row, {"index_id": index_id}).first() is not None


_writers: dict[int, _Writer] = {}
_writers_lock = threading.Lock()


def _writer_for(storage: Storage) -> _Writer:
    with _writers_lock:
        w = _writers.get(id(storage))
        if w is None:
            w = _writers[id(storage)] = _Writer(storage)
        return w


def flush_all(timeout: float = 30.0) -> None:
    """Commit every queued cache write (a clean stop calls this after downloads finished)."""
    with _writers_lock:
        writers = list(_writers.values())
    for w in writers:
        w.flush(timeout)


class MirrorStore:
    def __init__(self, storage: Storage, index_id: int):
        self.storage = storage
        self.index_id = index_id
        self._writer = _writer_for(storage)
        self._page_names: set[str] | None = None  # see may_have_page
        self._names_lock = threading.Lock()

    def flush(self) -> None:
        self._writer.flush()

    def after_commit(self, fn: Callable[[], None]) -> None:
        """``fn()`` once what was queued so far is committed (e.g. let go of a fetch lock, so
        another process looking for the row finds it)."""
        self._writer.after_commit(fn)

    # -- pages -----------------------------------------------------------------
    def may_have_page(self, name: str) -> bool:
        """False when no page of that name was stored: a name asked for the first time then
        costs no SQL lookup before it goes upstream (most of a cold install's requests).

        The names are read once and kept up to date by this process's writes. A page another
        process stored meanwhile (several servers on one database) is missing here: use this
        only to skip a lookup before asking upstream, and look (``load_page``) before failing.
        """
        names = self._page_names
        if names is None:
            with self._names_lock:
                if self._page_names is None:
                    self._page_names = self.page_names()
                names = self._page_names
        return name in names

    def load_page(self, name: str) -> Any:
        with self.storage.read() as conn:
            return conn.execute(_load_page, {"index_id": self.index_id, "project": name}).first()

    def save_page(self, name: str, url: str, raw: list, etag: str | None, last_modified: str | None,
                  serial: int | None, fetched: float) -> None:
        values = dict(index_id=self.index_id, project=name, url=url, links=json.dumps(raw, separators=(",", ":")),
                      etag=etag, last_modified=last_modified, serial=serial, fetched=fetched)
        self._writer.put(self.index_id, _upsert(self.storage, pages), values)
        if self._page_names is not None:
            self._page_names.add(name)

    def touch_page(self, name: str, fetched: float, etag: str | None, last_modified: str | None) -> None:
        params = {"key_index_id": self.index_id, "key_project": name, "new_fetched": fetched, "new_etag": etag,
                  "new_last_modified": last_modified}
        self._writer.put(self.index_id, _touch_page, params)

    def delete_page(self, name: str) -> None:
        if self._page_names is not None:
            self._page_names.discard(name)
        params = {"index_id": self.index_id, "project": name}
        self._writer.put(self.index_id, _delete_page, params)
        self.flush()  # rare; and a later load must not find the row again

    def page_names(self) -> set[str]:
        with self.storage.read() as conn:
            return set(conn.execute(_page_names, {"index_id": self.index_id}).scalars())

    # -- files ------------------------------------------------------------------
    def load_file(self, relpath: str) -> Any:
        with self.storage.read() as conn:
            return conn.execute(_load_file, {"index_id": self.index_id, "relpath": relpath}).first()

    def save_file(self, relpath: str, project: str, filename: str, sha256: str, size: int, created: float,
                  url: str) -> None:
        values = dict(index_id=self.index_id, relpath=relpath, project=project, filename=filename,
                      sha256=sha256, size=size, created=created, url=url, last_access=created)
        self._writer.put(self.index_id, _upsert(self.storage, files), values)

    def cached_relpaths(self, name: str) -> set[str]:
        with self.storage.read() as conn:
            return set(conn.execute(_cached_relpaths, {"index_id": self.index_id, "project": name}).scalars())

    # -- the project list ---------------------------------------------------------------
    def load_list(self) -> Any:
        with self.storage.read() as conn:
            return conn.execute(_load_list, {"index_id": self.index_id}).first()

    def save_list(self, names: str, etag: str | None, serial: int | None, fetched: float) -> None:
        """``names``: sorted, one per line (a JSON list before issue 24; ``load_list`` readers
        take both)."""
        values = dict(index_id=self.index_id, names=names, etag=etag, serial=serial, fetched=fetched)
        self._writer.put(self.index_id, _upsert(self.storage, lists), values)
