"""Content-addressed blob store: release files keyed by their sha256.

A blob is written to a temporary file, fsynced, then renamed into place and
the directory fsynced, all before the database transaction that names it
commits. A crash therefore leaves at worst an unreferenced blob, never a row
pointing at missing or partial bytes. Reads re-check the hash while streaming
(see ``iter_verified``) so a blob rotted on disk is never served.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 256 * 1024
SPARES = 8  # temp files kept ready for writers without a name suffix


class BlobCorrupt(Exception):
    """The bytes on disk no longer hash to their name."""


class BlobWriter:
    """Receives bytes, hashes them, and lands them atomically in the store."""

    def __init__(self, store: BlobStore, suffix: str = "", md5: bool = False,
                 spare: tuple[int, Path] | None = None):
        self._store = store
        fd, name = spare or tempfile.mkstemp(dir=store.tmpdir, prefix="upload-", suffix=suffix)
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._sha256 = hashlib.sha256()
        # md5 costs twice what sha256 does; only uploads check it (twine sends md5_digest)
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0
        self._done = False
        self._synced = False

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha256.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    def copy_from(self, fileobj: BinaryIO, limit: int | None = None) -> None:
        while True:
            data = fileobj.read(CHUNK)
            if not data:
                break
            self.write(data)
            if limit is not None and self.size > limit:
                raise ValueError("too large")

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def md5(self) -> str:
        if self._md5 is None:
            raise ValueError("this writer was made without md5")
        return self._md5.hexdigest()

    @property
    def tmp_path(self) -> Path:
        """Where the bytes are until ``commit``; readable after ``flush``."""
        self._file.flush()
        return self._tmp

    def sync(self) -> None:
        """fsync the bytes now (``commit`` then only renames): lets a caller keep the slow
        part out of a lock that readers need."""
        if not self._synced:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._synced = True

    def commit(self, durable: bool = True, sync_dir: bool = True) -> str:
        """fsync and rename into place; returns the sha256.

        durable=False skips both fsyncs: only for blobs that are copies of bytes held
        elsewhere (a wheel's METADATA), which a reader can re-derive after a crash.
        sync_dir=False leaves the directory fsync to the caller (``BlobStore.sync_dir``),
        which must still happen before any row names the blob.
        """
        if durable:
            self.sync()
        self._file.flush()
        self._file.close()
        digest = self.sha256
        self._store._install(self._tmp, digest, durable and sync_dir)
        self._done = True
        return digest

    def discard(self) -> None:
        if not self._done:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._done = True

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmpdir = self.root / "tmp"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self._dirs: set[Path] = set()  # blob directories known to exist
        self._spares: list[tuple[int, Path]] = []
        self._spares_lock = threading.Lock()
        self._want_spares = threading.Event()
        self._refiller: threading.Thread | None = None
        for stale in self.tmpdir.iterdir():  # left by a crash before rename: never named by any row
            stale.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def writer(self, suffix: str = "", md5: bool = False, spare: bool = False) -> BlobWriter:
        """suffix: keep the file's name ending (readers such as pkginfo go by it).
        spare: take a temp file made in advance (see ``_take_spare``); the first such
        writer starts the thread that keeps them ready."""
        return BlobWriter(self, suffix, md5, self._take_spare() if spare and not suffix else None)

    # -- temp files made ahead of need ----------------------------------------------------
    def _take_spare(self) -> tuple[int, Path] | None:
        """An empty temp file, already created and open, or None (make one then).

        Creating a file costs most of a millisecond on some file systems (0.75 ms on the
        ext4 these benchmarks run on), and a mirror download's client waits for it before
        its first byte. A thread keeps a few ready, so that wait happens before the request.
        """
        with self._spares_lock:
            spare = self._spares.pop() if self._spares else None
            if self._refiller is None:
                self._refiller = threading.Thread(target=self._refill_loop, name="blob-spares", daemon=True)
                self._refiller.start()
        self._want_spares.set()
        return spare

    def _refill_loop(self) -> None:
        while True:
            self._want_spares.wait()
            self._want_spares.clear()
            while len(self._spares) < SPARES:
                try:
                    fd, name = tempfile.mkstemp(dir=self.tmpdir, prefix="spare-")
                except OSError:
                    break  # the disk is full or gone: writers make their own and report it
                with self._spares_lock:
                    self._spares.append((fd, Path(name)))

    def put_bytes(self, data: bytes, durable: bool = True) -> str:
        with self.writer() as w:
            w.write(data)
            return w.commit(durable)

    def _install(self, tmp: Path, digest: str, durable: bool = True) -> None:
        target = self.path(digest)
        if target.exists():
            tmp.unlink(missing_ok=True)
            return
        if target.parent not in self._dirs:  # 65,536 of them at most: remember, not stat, them
            target.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(target.parent)
        try:
            os.replace(tmp, target)
        except FileNotFoundError:  # the directory went away behind our back
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        if durable:
            _fsync_dir(target.parent)

    def sync_dir(self, sha256: str) -> None:
        _fsync_dir(self.path(sha256).parent)

    def read_bytes(self, sha256: str) -> bytes:
        data = self.path(sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobCorrupt(sha256)
        return data

    def iter_verified(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the blob's bytes [start, end), holding back the last chunk until
        the whole blob hashed correctly; on a mismatch raise instead of sending it.

        For a range we still hash the whole file (ranges are rare: resumed downloads).
        """
        path = self.path(sha256)
        h = hashlib.sha256()
        pending: bytes | None = None
        pos = 0
        with open(path, "rb") as f:
            while True:
                data = f.read(CHUNK)
                if not data:
                    break
                h.update(data)
                lo, hi = max(start - pos, 0), len(data) if end is None else min(end - pos, len(data))
                pos += len(data)
                if hi <= lo:
                    continue
                piece = data[lo:hi]
                if pending is not None:
                    yield pending
                pending = piece
        if h.hexdigest() != sha256:
            raise BlobCorrupt(sha256)
        if pending is not None:
            yield pending


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
