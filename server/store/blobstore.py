"""Content-addressed blob store: release files keyed by their sha256.

A blob is written to a temporary file, fsynced, then renamed into place and
the directory fsynced, all before the database transaction that names it
commits. A crash therefore leaves at worst an unreferenced blob, never a row
pointing at missing or partial bytes. Reads re-check the hash while streaming
(see ``iter_verified``) so a blob rotted on disk is never served.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

CHUNK = 256 * 1024
SPARES = 32  # empty temp files kept ready for downloads: a 25-package cold install takes 25
SPARES_PAUSE = 0.5  # seconds without a spare taken before the used ones are replaced
SPARE_PREFIX = "spare-"
VERIFIED_FOR = 600.0  # seconds a blob hashed by this process is trusted while unchanged
VERIFIED_MAX = 10_000
OWNER_FILE = ".owner"  # in a process's temp dir, locked while that process lives
LAYOUT_FILE = "LAYOUT"  # present once blobs are at <aa>/<sha256> (see BlobStore._upgrade_layout)


class BlobEntry(NamedTuple):
    """One entry of a blob directory as ``BlobStore.scan`` found it."""

    sha256: str | None  # None for an odd entry
    path: str
    size: int
    mtime: float
    odd: bool  # not a blob: a link, a directory, a stray or misplaced name


class BlobCorrupt(Exception):
    """The bytes on disk no longer hash to their name."""


class BlobStoreUnavailable(OSError):
    """A remote blob store (S3) did not answer or refused: the request is answered 503
    and may be retried; the message names no credentials."""


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
    def has_md5(self) -> bool:
        return self._md5 is not None

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
        """Remove the temp file; safe after a failed write (a full disk: closing would try
        to flush the buffered rest and fail again, and the file must go all the same)."""
        if not self._done:
            self._done = True
            try:
                self._file.close()
            except OSError:
                pass
            finally:
                self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


class BlobStore:
    """Blobs live at ``<root>/<first two hex digits>/<sha256>``: 256 directories, made once.

    Making a directory costs far more than making a file on some file systems (ext4
    without a journal scans for inodes it may reuse), so none is made per blob: all 256
    are made by ``make_dirs`` soon after start, or on the spot by the first blob that needs
    one before then.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._root_str = str(self.root)
        self._dirs: set[Path] = set()  # blob directories known to exist
        self._spares: list[Path] = []
        self._spares_lock = threading.Lock()
        self._want_spares = threading.Event()  # set by takes; the refiller waits on it when full
        self._last_take = 0.0  # monotonic time of the last spare taken
        self._refiller: threading.Thread | None = None
        self._verified: dict[str, tuple[tuple[int, int, int, int], float]] = {}  # see _remember_verified
        self.tmpdir = self._claim_tmpdir()
        if not (self.root / LAYOUT_FILE).exists():
            self._upgrade_layout()

    def _claim_tmpdir(self) -> Path:
        """A directory for this process's temp files under ``blobs/tmp``, locked for as long
        as the process lives. Several server processes may share a server dir (on
        PostgreSQL): each clears at start what dead ones left behind (temp files are never
        named by any row), never what a live one is writing."""
        base = self.root / "tmp"
        base.mkdir(parents=True, exist_ok=True)
        for entry in base.iterdir():
            if not entry.is_dir():
                entry.unlink(missing_ok=True)  # a temp file of a version before per-process dirs
            elif not _held_by_a_live_process(entry):
                shutil.rmtree(entry, ignore_errors=True)
        tmpdir = Path(tempfile.mkdtemp(dir=base, prefix="p"))
        self._owner = open(tmpdir / OWNER_FILE, "w")  # held open: it is the lock
        fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return tmpdir

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def filename(self, sha256: str) -> str:
        """``path`` as a string: building a Path costs more than the stat or open it is for."""
        return f"{self._root_str}/{sha256[:2]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        return os.path.exists(self.filename(sha256))

    def size(self, sha256: str) -> int | None:
        """The blob's size, None if there is no such blob (one ``stat``, no race between
        asking whether it exists and how large it is)."""
        try:
            return os.stat(self.filename(sha256)).st_size
        except FileNotFoundError:
            return None

    def writer(self, suffix: str = "", md5: bool = False, spare: bool = False) -> BlobWriter:
        """suffix: keep the file's name ending (readers such as pkginfo go by it).
        spare: take a temp file made in advance (see ``_take_spare``)."""
        return BlobWriter(self, suffix, md5, self._take_spare() if spare and not suffix else None)

    # -- work done ahead of need ----------------------------------------------------------
    def make_dirs(self) -> None:
        """Make the 256 blob directories before the first blobs need them. Meant for a
        background thread soon after start; a blob makes its directory itself if this
        has not run yet."""
        made = False
        for i in range(256):
            d = self.root / f"{i:02x}"
            if d not in self._dirs:
                try:
                    d.mkdir()
                    made = True
                except FileExistsError:
                    pass
                self._dirs.add(d)
        if made:
            _fsync_dir(self.root)

    def keep_spares(self) -> None:
        """Start keeping spare temp files ready (for a server that downloads; see
        ``_take_spare``). The first download that wants one starts it too."""
        self._start_refiller()

    def _take_spare(self) -> tuple[int, Path] | None:
        """An empty temp file made in advance, opened for writing; None if none is left
        (the writer then makes its own).

        Creating a file costs most of a millisecond on some file systems (ext4 without a
        journal), and a mirror download's client waits for it before its first byte. A
        thread keeps a few ready, refilling only once requests pause, so a burst of cold
        downloads does not also pay for the files that replace the ones it used.
        """
        with self._spares_lock:
            path = self._spares.pop() if self._spares else None
        self._last_take = time.monotonic()
        self._start_refiller()
        self._want_spares.set()  # wakes the refiller only when it was waiting with all spares made
        if path is not None:
            try:
                return os.open(path, os.O_WRONLY | os.O_TRUNC), path
            except OSError:  # cleared behind our back: make one
                return None
        return None

    def _start_refiller(self) -> None:
        with self._spares_lock:
            if self._refiller is None:
                self._want_spares.set()  # make the first ones at once
                self._refiller = threading.Thread(target=self._refill_loop, name="blob-spares", daemon=True)
                self._refiller.start()

    def _refill_loop(self) -> None:
        while True:
            self._want_spares.wait()  # the first take since the spares were last made
            # then a pause: no spare taken for SPARES_PAUSE seconds. It sleeps rather than
            # waits on the event, so the takes of a burst do not wake this thread one by one
            # (each a thread switch on a cold request's way).
            while (left := self._last_take + SPARES_PAUSE - time.monotonic()) > 0:
                time.sleep(left)
            self._want_spares.clear()  # a take from here on sets it again: another round
            while len(self._spares) < SPARES:
                try:
                    fd, name = tempfile.mkstemp(dir=self.tmpdir, prefix=SPARE_PREFIX)
                    os.close(fd)
                except OSError:
                    break  # the disk is full or gone: writers make their own and report it
                with self._spares_lock:
                    self._spares.append(Path(name))

    # -- a store written by an older version -----------------------------------------------
    def _upgrade_layout(self) -> None:
        """Move blobs from the old ``<aa>/<bb>/<sha256>`` layout to ``<aa>/<sha256>``, then
        record the layout. Each move is an atomic rename, so a crash part-way leaves every
        blob in one place or the other, and the next start finishes the job."""
        for top in sorted(self.root.iterdir()):
            if not (top.is_dir() and _is_prefix(top.name)):
                continue
            for sub in sorted(top.iterdir()):
                if not (sub.is_dir() and _is_prefix(sub.name)):
                    continue
                for blob in sub.iterdir():
                    os.replace(blob, top / blob.name)
                _fsync_dir(top)
                sub.rmdir()
            _fsync_dir(top)
        marker = self.tmpdir / LAYOUT_FILE
        marker.write_text("1\n")
        os.replace(marker, self.root / LAYOUT_FILE)
        _fsync_dir(self.root)

    def put_bytes(self, data: bytes, durable: bool = True) -> str:
        with self.writer() as w:
            w.write(data)
            return w.commit(durable)

    def _install(self, tmp: Path, digest: str, durable: bool = True) -> None:
        target = self.path(digest)
        try:
            # The blob is there already: mark it as just written, so the garbage collector
            # (which re-checks the age of what it takes, see ``remove_unless_fresh``) leaves it
            # to the row about to name it. Gone meanwhile: the rename below puts it back.
            os.utime(target)
            tmp.unlink(missing_ok=True)
            return
        except FileNotFoundError:
            pass
        if target.parent not in self._dirs:  # 256 of them: remember, not stat, them
            self._make_dir(target.parent)
        try:
            os.replace(tmp, target)
        except FileNotFoundError:  # the directory went away behind our back
            self._make_dir(target.parent)
            os.replace(tmp, target)
        self._remember_verified(digest, _stamp(os.stat(target)))  # the writer hashed these bytes
        if durable:
            _fsync_dir(target.parent)

    def _make_dir(self, path: Path) -> None:
        try:
            path.mkdir()
            _fsync_dir(self.root)  # the new directory's name must last as long as the blob in it
        except FileExistsError:
            pass
        self._dirs.add(path)

    # -- what fsck and the garbage collector see --------------------------------------------
    def scan(self) -> Iterator[BlobEntry]:
        """Every entry of the 256 blob directories, without following links: blobs (a
        regular file named by a sha256) and anything else found there (``odd``), which
        the store neither serves nor deletes. Entries at the top (``tmp``, ``LAYOUT``)
        are the store's own and not listed."""
        for top in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not _is_prefix(top.name) or not top.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(top.path):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile
                name = entry.name
                blob = (stat.S_ISREG(st.st_mode) and len(name) == 64 and name.startswith(top.name)
                        and all(c in "0123456789abcdef" for c in name))
                yield BlobEntry(name if blob else None, entry.path, st.st_size, st.st_mtime, not blob)

    def remove_unless_fresh(self, sha256: str, min_age: float, now: float | None = None) -> bool:
        """Delete the blob unless it was written (or re-written, see ``_install``) less than
        ``min_age`` seconds ago; True if deleted.

        The blob is first renamed into this process's temp dir and its age read there, from
        the very file taken: a writer landing the same bytes at the same moment either
        refreshed the file before it was taken (then it is put back) or finds the name free
        and renames its own copy in. A kill between the two steps leaves the blob in the temp
        dir, which the next start of any process clears (it was unreferenced)."""
        now = time.time() if now is None else now
        taken = self.tmpdir / f"gc-{sha256}"
        try:
            os.rename(self.filename(sha256), taken)
        except FileNotFoundError:
            return False
        if now - os.lstat(taken).st_mtime < min_age:
            try:
                os.link(taken, self.filename(sha256))
            except FileExistsError:
                pass  # a writer landed a fresh copy meanwhile
            taken.unlink()
            return False
        taken.unlink()
        return True

    def quarantine(self, sha256: str, dest_dir: Path) -> Path | None:
        """Move the blob out of the store into ``dest_dir`` (same file system): never served
        again, kept for a human to look at. None if it was gone."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{sha256}.{int(time.time())}"
        try:
            os.rename(self.filename(sha256), dest)
        except FileNotFoundError:
            return None
        self._verified.pop(sha256, None)
        return dest

    def matches(self, entry: BlobEntry) -> bool:
        """Whether a blob ``scan`` found still hashes to its name (fsck); FileNotFoundError
        if it went meanwhile, another OSError if it became something else (a link)."""
        h = hashlib.sha256()
        # not through a link that replaced the file after the scan saw a regular file
        with open(os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW), "rb", buffering=0) as f:
            while data := f.read(CHUNK):
                h.update(data)
        return h.hexdigest() == entry.sha256

    def sync_dir(self, sha256: str) -> None:
        _fsync_dir(f"{self._root_str}/{sha256[:2]}")

    def read_bytes(self, sha256: str) -> bytes:
        data = self.path(sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobCorrupt(sha256)
        return data

    def iter_verified(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the blob's bytes [start, end), holding back the last chunk until
        the whole blob hashed correctly; on a mismatch raise instead of sending it.

        For a range we still hash the whole file (see ``open_blob`` for the way
        around that for a file hashed moments ago).
        """
        h = hashlib.sha256()
        pending: bytes | None = None
        pos = 0
        with open(self.filename(sha256), "rb", buffering=0) as f:
            stamp = _stamp(os.fstat(f.fileno()))
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
            self._verified.pop(sha256, None)
            raise BlobCorrupt(sha256)
        self._remember_verified(sha256, stamp)
        if pending is not None:
            yield pending

    def open_blob(self, sha256: str) -> tuple[BinaryIO, bool]:
        """The blob opened for reading, and whether this process hashed this very file
        recently (see below), so that it can be sent as it is. Unbuffered: it is read in
        large pieces or with ``os.pread``. FileNotFoundError if there is no such blob."""
        f = open(self.filename(sha256), "rb", buffering=0)
        try:
            return f, self._still_verified(sha256, _stamp(os.fstat(f.fileno())))
        except BaseException:
            f.close()
            raise

    # -- files hashed moments ago ----------------------------------------------------------
    # A blob this process hashed (as it was written, or served) is not hashed again for a
    # while if the file is unchanged: same inode, size, mtime and ctime, and anything that
    # changes a file's bytes through the file system changes its ctime. Within minutes
    # its pages are still in memory, so re-reading would not see a disk that rotted
    # underneath either: hashing again would only cost time. uv asks for every wheel
    # two or three times in a row (a HEAD, byte ranges for its metadata, then all of it).
    def _remember_verified(self, sha256: str, stamp: tuple[int, int, int, int]) -> None:
        verified = self._verified
        verified.pop(sha256, None)
        verified[sha256] = (stamp, time.monotonic())
        while len(verified) > VERIFIED_MAX:
            verified.pop(next(iter(verified)), None)

    def _still_verified(self, sha256: str, stamp: tuple[int, int, int, int]) -> bool:
        seen = self._verified.get(sha256)
        return seen is not None and seen[0] == stamp and time.monotonic() - seen[1] < VERIFIED_FOR


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _held_by_a_live_process(tmpdir: Path) -> bool:
    try:
        fd = os.open(tmpdir / OWNER_FILE, os.O_RDONLY)
    except FileNotFoundError:  # a process between making the directory and locking it, or long gone
        try:
            return time.time() - tmpdir.stat().st_mtime < 60
        except FileNotFoundError:
            return True  # removed meanwhile: nothing to do
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False  # nobody holds it (closing the file gives the lock back)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _is_prefix(name: str) -> bool:
    return len(name) == 2 and all(c in "0123456789abcdef" for c in name)


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
