"""A replica's files: fetched from the primary in the background, newest first, and on demand.

The feed names files by their sha256 (``files`` rows); their bytes come from
``GET <primary>/+replica/blob/<sha256>``. A few threads take the newest serial's files
first (what was just uploaded is what someone is about to install), write them through
the blob store's writer (hashed while written; a mismatch is discarded, never stored),
and record a file that fails with its reason; it is retried later with a growing pause.
None of this holds up the feed: rows are applied whether or not their files are here.

A request for a file that has not arrived yet fetches it at once (single-flight: twenty
pip processes asking cause one download) and keeps it. After a restart, files the rows
name but the store lacks are found by one scan of the ``files`` table and queued again.
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import requests
from sqlalchemy import select

from ..api.httpkit import APIError
from ..mirror.singleflight import SingleFlight
from ..store import schema
from .secret import HEADER

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("devpi.server.replication")
THREADS = 3
CHUNK = 1 << 20
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0  # seconds without a byte before a download is given up
ON_DEMAND_WAIT = 120.0  # seconds a request waits for its file from the primary
RETRY_FIRST, RETRY_MAX = 5.0, 600.0  # seconds before a failed file is tried again, doubling
MAX_SHOWN_FAILING = 50  # failing files listed in /+status (all are counted)
MAX_QUEUE = 1_000_000  # files waiting; beyond it the restart scan finds the rest


class FetchFailed(Exception):
    pass


class BlobFetcher:
    def __init__(self, core: Core, primary_url: str, secret: str, threads: int = THREADS):
        self.core = core
        self.primary_url = primary_url.rstrip("/")
        self.secret = secret
        self.threads = threads
        self._heap: list[tuple[int, str, int]] = []  # (-serial, sha256, size)
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self.failing: dict[str, dict[str, Any]] = {}  # sha256 -> reason, attempts, retry_at, serial, size
        self._cond = threading.Condition()
        self._flight = SingleFlight("replica-blob")
        self._stopping = threading.Event()
        self._session = requests.Session()

    # -- queueing ------------------------------------------------------------------------------
    def enqueue(self, serial: int, sha256: str, size: int) -> None:
        with self._cond:
            if sha256 in self._queued or sha256 in self._busy or len(self._queued) >= MAX_QUEUE:
                return
            if self.core.blobs.exists(sha256):
                return
            self._queued.add(sha256)
            heapq.heappush(self._heap, (-serial, sha256, size))
            self._cond.notify()

    def start(self) -> None:
        for i in range(self.threads):
            threading.Thread(target=self._work, name=f"replica-blobs-{i}", daemon=True).start()
        threading.Thread(target=self._retry_loop, name="replica-blob-retry", daemon=True).start()
        threading.Thread(target=self.scan_missing, name="replica-blob-scan", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def scan_missing(self) -> None:
        """Queue every file the rows name that the store lacks (after a restart: the queue was in memory)."""
        f = schema.files
        try:
            with self.core.storage.read() as conn:
                rows = conn.execute(select(f.c.sha256, f.c.size).order_by(f.c.id.desc())).all()
                rows += conn.execute(select(f.c.core_metadata_sha256, 0).where(
                    f.c.core_metadata_sha256.is_not(None)).order_by(f.c.id.desc())).all()
        except Exception:
            log.exception("replica: could not scan for missing files")
            return
        for sha, size in rows:
            if self._stopping.is_set():
                return
            if not self.core.blobs.exists(sha):
                self.enqueue(0, sha, size or 0)

    def status(self) -> dict[str, Any]:
        with self._cond:
            failing = sorted(self.failing.items(), key=lambda kv: -kv[1]["serial"])
            return {"pending": len(self._queued) + len(self._busy), "failing_count": len(failing),
                    "failing": [{"sha256": sha, "reason": f["reason"], "attempts": f["attempts"],
                                 "retry_at": f["retry_at"]} for sha, f in failing[:MAX_SHOWN_FAILING]]}

    def failing_reasons(self) -> dict[str, str]:
        """sha256 -> why it failed, for every file that is failing now."""
        with self._cond:
            return {sha: f["reason"] for sha, f in self.failing.items()}

    # -- work ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                while not self._heap and not self._stopping.is_set():
                    self._cond.wait(5.0)
                if self._stopping.is_set():
                    return
                neg_serial, sha, size = heapq.heappop(self._heap)
                self._queued.discard(sha)
                self._busy.add(sha)
            try:
                self._flight.submit(sha, lambda s=sha, n=size: self.fetch(s, n)).result()
            except Exception as e:
                self._failed(sha, size, -neg_serial, str(e))
            else:
                with self._cond:
                    self.failing.pop(sha, None)
            finally:
                with self._cond:
                    self._busy.discard(sha)

    def _failed(self, sha: str, size: int, serial: int, reason: str) -> None:
        with self._cond:
            before = self.failing.get(sha)
            attempts = before["attempts"] + 1 if before else 1
            pause = min(RETRY_MAX, RETRY_FIRST * 2 ** (attempts - 1))
            self.failing[sha] = {"reason": reason[:300], "attempts": attempts, "retry_at": time.time() + pause,
                                 "serial": serial, "size": size}
        log.warning("replica: file %s failed (%s); retrying in %.0f s", sha, reason[:300], pause)

    def _retry_loop(self) -> None:
        while not self._stopping.wait(1.0):
            now = time.time()
            with self._cond:
                due = [(sha, f) for sha, f in self.failing.items() if f["retry_at"] <= now
                       and sha not in self._queued and sha not in self._busy]
            for sha, f in due:
                if self.core.blobs.exists(sha):
                    with self._cond:
                        self.failing.pop(sha, None)
                    continue
                with self._cond:
                    f["retry_at"] = now + RETRY_MAX  # until it is taken up and tried again
                self.enqueue(f["serial"], sha, f["size"])

    def fetch(self, sha256: str, size: int) -> bool:
        """Download one blob from the primary into the store, hash-checked; raise FetchFailed."""
        if self.core.blobs.exists(sha256):
            return True
        url = f"{self.primary_url}/+replica/blob/{sha256}"
        limit = max(size, 0) or self.core.config.max_upload_size
        try:
            resp = self._session.get(url, headers={HEADER: self.secret}, stream=True, allow_redirects=False,
                                     timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                resp.close()  # an object store's presigned URL: without our secret
                resp = self._session.get(resp.headers["Location"], stream=True, allow_redirects=False,
                                         timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            with resp:
                if resp.status_code != 200:
                    raise FetchFailed(f"the primary answered {resp.status_code}")
                with self.core.blobs.writer() as w:
                    for chunk in resp.iter_content(CHUNK):
                        w.write(chunk)
                        if w.size > limit:
                            raise FetchFailed(f"more than the {limit} bytes the row says")
                    if w.sha256 != sha256:
                        raise FetchFailed(f"hash mismatch: the primary sent bytes hashing to {w.sha256}")
                    if size and w.size != size:
                        raise FetchFailed(f"{w.size} bytes, the row says {size}")
                    w.commit()
        except requests.RequestException as e:
            raise FetchFailed(f"cannot reach the primary: {type(e).__name__}") from None
        except OSError as e:
            raise FetchFailed(f"cannot store it: {e.strerror or e}") from None
        return True

    def fetch_now(self, sha256: str, size: int) -> bool:
        """For a request: the file at once (shared with a running fetch), or a JSON 503."""
        try:
            self._flight.submit(sha256, lambda: self.fetch(sha256, size)).result(ON_DEMAND_WAIT)
        except Exception as e:
            reason = str(e) or type(e).__name__
            with self._cond:
                if sha256 not in self.failing:
                    self._failed(sha256, size, 0, reason)
            raise APIError(503, f"this file has not reached the replica yet and the primary could not "
                                f"send it ({reason}): try again later", {"Retry-After": "30"}) from None
        with self._cond:
            self.failing.pop(sha256, None)
        return True
