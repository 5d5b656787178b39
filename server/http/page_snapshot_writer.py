"""Keeps the start-up snapshot of simple pages (repos/page_snapshot.py) current.

Which pages go in: those of the page cache whose every byte follows from the database
at one serial and that anyone may read, so that answering them from the file at the
next start is exactly what rendering them would give:

- every index in the page's index's resolution order is a plain stage (no mirror, whose
  data changes without a commit, and no plugin's index type, which may render as it likes);
- every one of them is public: ``acl_read`` unset or containing ``:ANONYMOUS:``. The
  start-up lane answers only requests without credentials (an index readable by some users
  only is never answered from the file);
- the page is not a compact (gzip-only) one and does not expire.

The file also says whether root's password was empty at that serial: a server refuses to
listen on other addresses than loopback then (main.py), and must not answer from the file
there either.

The file is stamped with the serial the pages are true at, found so: read the serial this
process has announced (every commit up to it has invalidated the page cache), take the
pages, then read the database's serial; if it moved, a commit was in flight and the
writer tries again later. A page the cache holds reflects a state at least as new as the
announced serial (the cache never keeps a page rendered before an invalidation it missed),
so the stamp is never newer than a page; a page newer than its stamp is harmless: the
database then has a newer serial and the file is not used.

It writes from a daemon thread, at most once per ``delay`` seconds and only when a page was
kept or a commit came, and once more at shutdown: warm requests never wait for it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..accounts.auth import verify_password
from ..repos import page_snapshot
from ..store import catalog
from ..store.storage import kv_get

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("devpi.server")
WRITE_DELAY = 1.0  # seconds: changes are gathered this long before the file is written


class PageSnapshotWriter:
    def __init__(self, core: Core, path: Path, fingerprint: str, headers: Callable[[int], dict[str, str]],
                 delay: float = WRITE_DELAY):
        self.core = core
        self.path = path
        self.fingerprint = fingerprint
        self.headers = headers  # the server's own headers of an answer at a serial
        self.delay = delay
        self.writes = 0
        self._written: tuple | None = None  # what the file holds: (serial, keys and ETags)
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # one write at a time (the thread, or the one at shutdown)
        self._thread: threading.Thread | None = None
        self._root_hash: str | None = None
        self._root_open = True

    def start(self) -> None:
        self.core.page_cache.on_keep = self._dirty.set
        self.core.change_listeners.append(lambda serial, changes: self._dirty.set())
        self._dirty.set()  # the file may predate the last commit: stamp it anew
        self._thread = threading.Thread(target=self._run, name="page-snapshot", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.wait(self.delay):
                return
            self._dirty.clear()
            try:
                if not self.write():
                    self._dirty.set()  # a commit was in flight: again after the delay
            except Exception:
                log.exception("could not write the simple-page snapshot %s", self.path)

    def stop(self) -> None:
        """Stop the thread and write what the cache holds now (at shutdown)."""
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.write()
        except Exception:
            log.exception("could not write the simple-page snapshot %s", self.path)

    def write(self) -> bool:
        """Write the file unless it already holds these pages at this serial; False when the
        database's serial moved meanwhile (nothing written)."""
        with self._lock:
            core = self.core
            serial = core.storage.current_serial
            pages = core.page_cache.items()
            public = self._snapshot_indexes()
            kept = [(key, page) for key, page in pages  # 5 parts: a view hiding no member
                    if len(key) == 5 and f"{key[0]}/{key[1]}" in public and page.expires is None
                    and page.body is not None]
            with core.storage.read() as conn:
                now = kv_get(conn, "serial")
                root = catalog.get_user(conn, "root")
            if now is None or int(now) != serial:
                return False
            signature = (serial, tuple((key, page.etag) for key, page in kept))
            if signature == self._written:
                return True
            page_snapshot.dump(self.path, serial=serial, uuid=core.uuid, fingerprint=self.fingerprint,
                               headers=self.headers(serial), pages=kept,
                               open_root=root is None or self._open_root(root.pwhash))
            self._written = signature
            self.writes += 1
            return True

    def _open_root(self, pwhash: str) -> bool:
        """Whether root's password is empty (a server holding such a database refuses to listen
        on other addresses than loopback: the start-up lane must not either). Remembered per
        hash: verifying one costs a key derivation."""
        if self._root_hash != pwhash:
            self._root_open, self._root_hash = verify_password("", pwhash), pwhash
        return self._root_open

    def _snapshot_indexes(self) -> set[str]:
        """The indexes whose pages may go in the file (see the module's docstring)."""
        core = self.core
        names = set()
        for ix in core.indexes().values():
            if core.chain_open(ix.fullname) and all(m.type == "stage" for m in core.resolution_order(ix)):
                names.add(ix.fullname)
        return names
