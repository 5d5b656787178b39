"""One upstream file download, streamed to any number of clients while it is stored.

A ``FileFetch`` downloads into a blob-store temp file, driven either by the
request that started it (``lead``: its client gets each piece as it is
written) or by a thread of its own (``start``: for HEAD and byte ranges).
Every other client asking meanwhile reads that file as it grows. The last
piece each client gets is held back until the whole transfer is complete and
its sha256 equals the upstream page's: on a mismatch or a short transfer the
client's stream raises instead, so the connection is cut and no client ever
holds a complete wrong file. Only a verified download becomes a blob and a row.

Upstream's bytes are taken as sent (``Accept-Encoding: identity``, nothing
decoded whatever ``Content-Encoding`` says: a misconfigured server sending a
``.tar.gz`` as ``Content-Encoding: gzip`` then still verifies, and a body
whose hash is of its decoded form is refused). A download is bounded: at most
the length it announced, else the page's declared size, else the server's
``--mirror-max-file-size``; at most ``--mirror-download-timeout`` seconds in
all; and each read waits at most the read timeout (a stalled upstream).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from ..store.blobstore import BlobStore
from .page import redact

log = logging.getLogger("devpi.server.mirror")
CHUNK = 256 * 1024  # per read from upstream: fewer, larger reads (each one a GIL hand-off) cost less CPU


class FetchFailed(Exception):
    """The upstream transfer failed or did not verify; status is what the client gets."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


_finishers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="download-finish")
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
                 on_verified: Callable[[FileFetch], None], on_done: Callable[[FileFetch], None],
                 expected_md5: str | None = None, declared_size: int | None = None,
                 max_bytes: int = 4 << 30, max_seconds: float = 3600.0):
        self.blobs = blobs
        self.url = url
        self.shown = redact(url)  # for logs and messages: no credentials
        self.filename = filename
        self.expected = expected_sha256
        self.expected_md5 = None if expected_sha256 else expected_md5  # an older index's only hash
        self._get = get
        self._timeout = timeout
        self.declared_size = declared_size  # the upstream page's "size" (PEP 700), if it gave one
        self.max_bytes = max_bytes if declared_size is None else min(declared_size, max_bytes)
        self._deadline = time.monotonic() + max_seconds
        self._max_seconds = max_seconds
        self._on_verified = on_verified  # store the row (runs after the blob is committed)
        self._on_done = on_done  # forget this fetch (when it fails, and at its end)
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
        self._resp: Any = None
        self._writer: Any = None
        self._chunks: Iterator[bytes] = iter(())
        self._status: int | str = "-"
        self._drained = False
        self._t0 = time.perf_counter()

    # -- who drives the transfer -----------------------------------------------------------
    def start(self) -> FileFetch:
        """Download in a thread of its own; clients follow with ``stream``."""
        self._register()
        threading.Thread(target=self._run, name=f"download:{self.filename}", daemon=True).start()
        return self

    def lead(self) -> LeaderBody | None:
        """For the client whose GET started the download: open it in the calling thread and
        return the body that client sends while it drives the transfer itself. That spares a
        thread and a hand-off per chunk, which is most of a small file's cold cost. Other
        clients follow with ``stream``. None if the transfer failed before its first byte
        (``wait_headers`` raises why); the body's ``close`` finishes a transfer its client
        left early, so the next client finds the file stored."""
        self._register()
        self._open_or_fail()
        if self.state == "failed":
            self._drain()
            return None
        return LeaderBody(self)

    def _register(self) -> None:
        with _running_lock:
            _running.add(self)

    def _run(self) -> None:
        self._open_or_fail()
        self._drain()

    def _open_or_fail(self) -> None:
        try:
            self._open()
        except Exception as e:  # a full disk, say: never leave waiters hanging
            log.exception("mirror: download of %s failed", self.shown)
            self._fail(502, f"download of {self.shown} failed: {e}")

    # -- the transfer, step by step (whichever thread drives it) ---------------------------
    def _fail(self, status: int, message: str) -> None:
        self._on_done(self)  # before anyone hears of the failure: their next request tries afresh
        with self._cond:
            self.state = "failed"
            self.error = FetchFailed(status, message)
            self._cond.notify_all()
        self.headers_ready.set()

    def _open(self) -> None:
        """Send the request; on a 200 get ready to receive the body."""
        try:
            resp = self._get(self.url, stream=True, timeout=self._timeout)
        except Exception as e:
            self._status = type(e).__name__
            self._fail(502, f"could not fetch {self.shown} from upstream: {e}")
            return
        self._resp = resp
        self._status = resp.status_code
        if resp.status_code != 200:
            code = 404 if resp.status_code in (404, 410) else 502
            # the original's words, which scripts and devpi-client users know
            self._fail(code, f"error {resp.status_code} getting {self.shown}")
            return
        length = resp.headers.get("Content-Length")
        self.content_length = int(length) if length and length.isdigit() else None
        if self.content_length is not None and self.content_length > self.max_bytes:
            self._status = f"{self._status} (too large: {self.content_length})"
            self._fail(502, f"upstream announced {self.content_length} bytes for {self.shown}, more than the "
                            f"{self.max_bytes} allowed"
                            + (" (the page's declared size)" if self.declared_size is not None else ""))
            return
        if self.content_length is None and self.declared_size is not None:
            self.content_length = self.declared_size  # what clients are told, and what must arrive
        self.last_modified = resp.headers.get("Last-Modified")
        self._writer = self.blobs.writer(spare=True, md5=bool(self.expected_md5))  # a temp file made in advance
        self._tmp_path = self._writer.tmp_path
        # whatever each read brings (a trickle must not keep one read waiting past the
        # deadline); ``_next_piece`` gathers them into pieces of up to CHUNK again
        self._chunks = resp.iter_content(CHUNK, partial=True)
        self.headers_ready.set()

    def _read_chunk(self) -> bytes | None:
        """The next piece from upstream, written where every client reads it; None at the end
        of the body or when it broke off (then the fetch has failed)."""
        if self.state != "running":
            return None
        writer = self._writer
        try:
            data = self._next_piece(writer.size)
            if data is None:
                return None
        except Exception as e:
            self._status = f"{self._status} (cut: {type(e).__name__})"
            self._fail(502, f"download of {self.shown} broke off after {writer.size} bytes: {e}")
            log.error("mirror: discarding %s: transfer from %s broke off after %d bytes",
                      self.filename, self.shown, writer.size)
            return None
        limit = self.max_bytes if self.content_length is None else min(self.content_length, self.max_bytes)
        if writer.size + len(data) > limit:
            self._status = f"{self._status} (too large)"
            self._fail(502, f"download of {self.shown} is larger than the {limit} bytes allowed: not serving it")
            log.error("mirror: discarding %s: more than %d bytes from %s", self.filename, limit, self.shown)
            return None
        if time.monotonic() > self._deadline:
            self._status = f"{self._status} (too slow)"
            self._fail(502, f"download of {self.shown} took longer than {self._max_seconds:.0f}s: not serving it")
            log.error("mirror: discarding %s: not complete after %.0fs", self.filename, self._max_seconds)
            return None
        writer.write(data)
        writer.tmp_path  # flush, so readers see it  # noqa: B018
        with self._cond:
            self.written += len(data)
            self._cond.notify_all()
        return data

    def _next_piece(self, size: int) -> bytes | None:
        """Up to CHUNK bytes, fewer at the end of the body, past the size limit or the
        deadline (``_read_chunk`` then refuses the download); None at the end."""
        parts: list[bytes] = []
        got = 0
        limit = self.max_bytes if self.content_length is None else min(self.content_length, self.max_bytes)
        while got < CHUNK:
            data = next(self._chunks, None)
            if data is None:
                break
            parts.append(data)
            got += len(data)
            if size + got > limit or time.monotonic() > self._deadline:
                break
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _verify(self) -> bool:
        """After the last piece: complete and matching the page? Then clients get their last piece."""
        if self.state != "running":
            return self.state in ("verified", "committed")
        writer = self._writer
        if self.content_length is not None and writer.size != self.content_length:
            self._fail(502, f"truncated download of {self.shown}: {writer.size} of {self.content_length} bytes")
            log.error("mirror: discarding %s: truncated (%d of %d bytes)", self.filename, writer.size,
                      self.content_length)
            return False
        if self.expected and writer.sha256 != self.expected:
            self._fail(502, f"sha256 of {self.shown} does not match the upstream page: not serving it")
            log.error("mirror: discarding %s: sha256 %s does not match the upstream page's %s",
                      self.filename, writer.sha256, self.expected)
            return False
        if self.expected_md5 and writer.md5 != self.expected_md5:
            self._fail(502, f"md5 of {self.shown} does not match the upstream page: not serving it")
            log.error("mirror: discarding %s: md5 %s does not match the upstream page's %s",
                      self.filename, writer.md5, self.expected_md5)
            return False
        self.sha256 = writer.sha256
        with self._cond:  # clients may now send their last piece
            self.state = "verified"
            self._cond.notify_all()
        return True

    def _store(self) -> None:
        """Make the verified bytes a durable blob, then record the row naming it."""
        writer = self._writer
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

    def _drain(self) -> None:
        """Take the transfer to its end, whoever calls and however far it got: read the rest,
        verify, store, clean up. Runs once."""
        with self._cond:
            if self._drained:
                return
            self._drained = True
        try:
            while self._read_chunk() is not None:
                pass
            if self._verify():
                self._store()
        except Exception as e:  # never leave waiters hanging
            log.exception("mirror: download of %s failed", self.shown)
            self._fail(502, f"download of {self.shown} failed: {e}")
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._resp is not None:
            self._resp.close()
        if self._writer is not None:
            self._writer.discard()
        self.headers_ready.set()
        log.info("upstream GET %s %s %d bytes %.0fms", self.shown, self._status, self.written,
                 (time.perf_counter() - self._t0) * 1000)
        self._on_done(self)
        with _running_lock:
            _running.discard(self)

    def _lead_chunks(self) -> Iterator[bytes]:
        pending: bytes | None = None
        while (data := self._read_chunk()) is not None:
            if pending is not None:
                yield pending
            pending = data
        if not self._verify():
            raise self.error  # type: ignore[misc]
        if pending is not None:
            yield pending

    # -- the clients --------------------------------------------------------------------
    def wait_headers(self, timeout: float) -> None:
        """Block until upstream's headers arrived; raise FetchFailed if it failed before."""
        if not self.headers_ready.wait(timeout):
            raise FetchFailed(504, f"upstream did not answer for {self.shown} within {timeout:.0f}s")
        if self.state == "failed":
            raise self.error  # type: ignore[misc]

    def open_verified(self, timeout: float) -> BinaryIO:
        """The whole file, checked, opened for reading (for a client that wants a byte range:
        only a complete, verified file says what its bytes are); raise FetchFailed otherwise."""
        with self._cond:
            self._wait_past(("running",), timeout)
            # under the lock: the temp file is renamed to the blob under it, never between
            return open(self.blob_path if self.state == "committed" else self._tmp_path, "rb", buffering=0)

    def wait_committed(self, timeout: float) -> None:
        """Block until the checked bytes are a durable blob; raise FetchFailed otherwise."""
        with self._cond:
            self._wait_past(("running", "verified"), timeout)

    def _wait_past(self, states: tuple[str, ...], timeout: float) -> None:
        """With ``_cond`` held: wait until the download has left ``states``; raise its error
        if it failed, or a 504 once ``timeout`` has passed."""
        deadline = time.monotonic() + timeout
        while self.state in states:
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
            f = open(self.blob_path if self.state == "committed" else self._tmp_path, "rb", buffering=0)
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


class LeaderBody:
    """The leading client's response body (``FileFetch.lead``). A WSGI server calls ``close``
    when the response ends or its client goes away: the transfer is then finished anyway."""

    def __init__(self, fetch: FileFetch):
        self._fetch = fetch
        self._chunks = fetch._lead_chunks()

    def __iter__(self) -> LeaderBody:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """The rest (fsyncs and the row once the client has its bytes, or the remaining
        transfer if it hung up) happens in the background: the client's next request on
        this connection waits until this one's response is closed."""
        self._chunks.close()
        try:
            _finishers.submit(self._fetch._drain)
        except RuntimeError:  # the interpreter is shutting down: no new threads
            self._fetch._drain()
