"""The mirror's SQL: stored pages, cached files and upstream's project list.

Reads are plain queries. Writes are queued and committed by one writer
thread, many per transaction: a commit costs an fsync (several ms on a busy
disk), and a client waiting for a freshly fetched page must not wait for it.
The mirror keeps what it queued in memory, so nothing reads the queue's
contents back from SQL before they land (``flush`` waits when it must).
The cache is upstream's data, not a change made here: no serial, no changelog.
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

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from . import schema
from .storage import Storage

log = logging.getLogger("devpi.server.mirror")
Write = Callable[[Connection], None]

pages, files, lists = schema.mirror_pages, schema.mirror_files, schema.mirror_lists
COALESCE = 0.05  # seconds the writer waits after the first queued write before committing


class _Writer:
    """One thread that commits queued writes in batches (shared by all mirrors of a storage)."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._queue: queue.Queue[tuple[Write | None, threading.Event | None]] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="mirror-writer", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def put(self, fn: Write) -> None:
        self._queue.put((fn, None))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is committed."""
        done = threading.Event()
        self._queue.put((None, done))
        done.wait(timeout)

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
            writes = [fn for fn, _ in batch if fn is not None]
            try:
                if writes:
                    with self.storage.write() as tx:
                        for fn in writes:
                            fn(tx.conn)
            except Exception:
                log.exception("mirror: could not store %d cache updates", len(writes))
            for _, done in batch:
                if done is not None:
                    done.set()


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
            return conn.execute(select(pages).where(pages.c.index_id == self.index_id,
                                                    pages.c.project == name)).first()

    def save_page(self, name: str, url: str, raw: list, etag: str | None, last_modified: str | None,
                  serial: int | None, fetched: float) -> None:
        values = dict(index_id=self.index_id, project=name, url=url, links=json.dumps(raw, separators=(",", ":")),
                      etag=etag, last_modified=last_modified, serial=serial, fetched=fetched)

        def write(conn: Connection) -> None:
            conn.execute(delete(pages).where(pages.c.index_id == self.index_id, pages.c.project == name))
            conn.execute(insert(pages).values(**values))

        self._writer.put(write)
        if self._page_names is not None:
            self._page_names.add(name)

    def touch_page(self, name: str, fetched: float, etag: str | None, last_modified: str | None) -> None:
        self._writer.put(lambda conn: conn.execute(
            update(pages).where(pages.c.index_id == self.index_id, pages.c.project == name)
            .values(fetched=fetched, etag=etag, last_modified=last_modified)))

    def delete_page(self, name: str) -> None:
        if self._page_names is not None:
            self._page_names.discard(name)
        self._writer.put(lambda conn: conn.execute(
            delete(pages).where(pages.c.index_id == self.index_id, pages.c.project == name)))
        self.flush()  # rare; and a later load must not find the row again

    def page_names(self) -> set[str]:
        with self.storage.read() as conn:
            return set(conn.execute(select(pages.c.project).where(pages.c.index_id == self.index_id)).scalars())

    # -- files ------------------------------------------------------------------
    def load_file(self, relpath: str) -> Any:
        with self.storage.read() as conn:
            return conn.execute(select(files).where(files.c.index_id == self.index_id,
                                                    files.c.relpath == relpath)).first()

    def save_file(self, relpath: str, project: str, filename: str, sha256: str, size: int, created: float,
                  url: str) -> None:
        values = dict(index_id=self.index_id, relpath=relpath, project=project, filename=filename,
                      sha256=sha256, size=size, created=created, url=url)

        def write(conn: Connection) -> None:
            conn.execute(delete(files).where(files.c.index_id == self.index_id, files.c.relpath == relpath))
            conn.execute(insert(files).values(**values))

        self._writer.put(write)

    def cached_relpaths(self, name: str) -> set[str]:
        with self.storage.read() as conn:
            return set(conn.execute(select(files.c.relpath).where(
                files.c.index_id == self.index_id, files.c.project == name)).scalars())

    # -- the project list ---------------------------------------------------------------
    def load_list(self) -> Any:
        with self.storage.read() as conn:
            return conn.execute(select(lists).where(lists.c.index_id == self.index_id)).first()

    def save_list(self, names: list[str], etag: str | None, serial: int | None, fetched: float) -> None:
        values = dict(index_id=self.index_id, names=json.dumps(names), etag=etag, serial=serial, fetched=fetched)

        def write(conn: Connection) -> None:
            conn.execute(delete(lists).where(lists.c.index_id == self.index_id))
            conn.execute(insert(lists).values(**values))

        self._writer.put(write)
