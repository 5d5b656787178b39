"""One upstream file download, streamed to any number of clients while it is stored.

A ``FileFetch`` downloads in its own thread into a blob-store temp file.
Clients (the first one and everyone who asks while it runs) read that file
as it grows, but the last piece each client gets is held back until the
whole transfer is complete and its sha256 equals the upstream page's: on a
mismatch or a short transfer the client's stream raises instead, so the
connection is cut and no client ever holds a complete wrong file. Only a
verified download becomes a blob and a row.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .blobs import BlobStore
from .mirror_page import redact

log = logging.getLogger("devpi.server.mirror")
CHUNK = 64 * 1024


class FetchFailed(Exception):
    """The upstream transfer failed or did not verify; status is what the client gets."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


_running: set = set()  # downloads in progress, so a clean stop can let them finish recording
_running_lock = threading.Lock()


def wait_running(timeout: float = 10.0) -> bool:
    """At shutdown: give downloads in progress a bounded time to land and record their blob.

    A client may have had its last byte (the hash checked) while the blob's fsync, rename
    and row are still on their way; stopping then would forget a file it already served."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _running_lock:
            if not _running:
                return True
        time.sleep(0.02)
    return False


class FileFetch:
    """State: running -> verified -> committed, or running -> failed."""

    def __init__(self, blobs: BlobStore, url: str, filename: str, expected_sha256: str | None,
                 get: Callable[..., Any], timeout: tuple[float, float],
                 on_verified: Callable[[FileFetch], None], on_done: Callable[[FileFetch], None]):
        self.blobs = blobs
        self.url = url
        self.shown = redact(url)  # for logs and messages: no credentials
        self.filename = filename
        self.expected = expected_sha256
        self._get = get
        self._timeout = timeout
        self._on_verified = on_verified  # store the row (runs after the blob is committed)
        self._on_done = on_done  # forget this fetch (runs last, whatever happened)
        self._cond = threading.Condition()
        self.headers_ready = threading.Event()
        self.state = "running"
        self.error: FetchFailed | None = None
        self.written = 0
        self.content_length: int | None = None
        self.last_modified: str | None = None
        self.sha256: str | None = None
        self._tmp_path: Any = None
        self.blob_path: Any = None

    def start(self) -> FileFetch:
        with _running_lock:
            _running.add(self)
        threading.Thread(target=self._run, name=f"download:{self.filename}", daemon=True).start()
        return self

    # -- the download thread -------------------------------------------------------------
    def _fail(self, status: int, message: str) -> None:
        with self._cond:
            self.state = "failed"
            self.error = FetchFailed(status, message)
            self._cond.notify_all()
        self.headers_ready.set()

    def _run(self) -> None:
        t0 = time.perf_counter()
        status: int | str = "-"
        writer = None
        try:
            try:
                resp = self._get(self.url, stream=True, timeout=self._timeout)
            except Exception as e:
                status = type(e).__name__
                self._fail(502, f"could not fetch {self.shown} from upstream: {e}")
                return
            with resp:
                status = resp.status_code
                if resp.status_code != 200:
                    code = 404 if resp.status_code in (404, 410) else 502
                    self._fail(code, f"upstream answered {resp.status_code} for {self.shown}")
                    return
                length = resp.headers.get("Content-Length")
                self.content_length = int(length) if length and length.isdigit() else None
                self.last_modified = resp.headers.get("Last-Modified")
                writer = self.blobs.writer(suffix="-" + self.filename[-60:])
                self._tmp_path = writer.tmp_path
                self.headers_ready.set()
                try:
                    for data in resp.iter_content(CHUNK):
                        if not data:
                            continue
                        writer.write(data)
                        writer.tmp_path  # flush, so readers see it  # noqa: B018
                        with self._cond:
                            self.written += len(data)
                            self._cond.notify_all()
                except Exception as e:
                    status = f"{status} (cut: {type(e).__name__})"
                    self._fail(502, f"download of {self.shown} broke off after {writer.size} bytes: {e}")
                    log.error("mirror: discarding %s: transfer from %s broke off after %d bytes",
                              self.filename, self.shown, writer.size)
                    return
            if self.content_length is not None and writer.size != self.content_length:
                self._fail(502, f"truncated download of {self.shown}: {writer.size} of {self.content_length} bytes")
                log.error("mirror: discarding %s: truncated (%d of %d bytes)", self.filename, writer.size,
                          self.content_length)
                return
            if self.expected and writer.sha256 != self.expected:
                self._fail(502, f"sha256 of {self.shown} does not match the upstream page: not serving it")
                log.error("mirror: discarding %s: sha256 %s does not match the upstream page's %s",
                          self.filename, writer.sha256, self.expected)
                return
            self.sha256 = writer.sha256
            with self._cond:  # clients may now send their last piece
                self.state = "verified"
                self._cond.notify_all()
            writer.sync()  # not under the lock: clients waiting for "verified" must not wait for the disk
            with self._cond:  # rename under the lock: a reader opens either the temp file or the blob
                writer.commit(sync_dir=False)
                self.blob_path = self.blobs.path(self.sha256)
                self.state = "committed"
                self._cond.notify_all()
            self.blobs.sync_dir(self.sha256)  # before _on_verified records the row naming it
            try:
                self._on_verified(self)
            except Exception:
                log.exception("mirror: could not record %s", self.filename)
        except Exception as e:  # never leave waiters hanging
            log.exception("mirror: download of %s failed", self.shown)
            self._fail(502, f"download of {self.shown} failed: {e}")
        finally:
            if writer is not None:
                writer.discard()
            self.headers_ready.set()
            log.info("upstream GET %s %s %d bytes %.0fms", self.shown, status, self.written,
                     (time.perf_counter() - t0) * 1000)
            self._on_done(self)
            with _running_lock:
                _running.discard(self)

    # -- the clients --------------------------------------------------------------------
    def wait_headers(self, timeout: float) -> None:
        """Block until upstream's headers arrived; raise FetchFailed if it failed before."""
        if not self.headers_ready.wait(timeout):
            raise FetchFailed(504, f"upstream did not answer for {self.shown} within {timeout:.0f}s")
        if self.state == "failed":
            raise self.error  # type: ignore[misc]

    def wait_committed(self, timeout: float) -> None:
        """Block until the verified file is a blob (for a client that wants a byte range:
        only a whole, checked file says what its bytes are); raise FetchFailed otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.state not in ("committed", "failed"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FetchFailed(504, f"download of {self.shown} did not finish within {timeout:.0f}s")
                self._cond.wait(left)
            if self.state == "failed":
                raise self.error  # type: ignore[misc]

    def stream(self) -> Iterator[bytes]:
        """The bytes as they arrive, the last piece only once verified."""
        with self._cond:
            if self.state == "failed":
                raise self.error  # type: ignore[misc]
            f = open(self.blob_path if self.state == "committed" else self._tmp_path, "rb")
        pending: bytes | None = None
        pos = 0
        try:
            while True:
                with self._cond:
                    while self.written <= pos and self.state == "running":
                        self._cond.wait(1.0)
                    available, state = self.written, self.state
                if available > pos:
                    while pos < available:
                        data = f.read(min(CHUNK * 4, available - pos))
                        if not data:
                            break
                        pos += len(data)
                        if pending is not None:
                            yield pending
                        pending = data
                    continue
                if state == "failed":
                    raise self.error  # type: ignore[misc]
                break  # verified or committed: everything was read
            if pending is not None:
                yield pending
        finally:
            f.close()
