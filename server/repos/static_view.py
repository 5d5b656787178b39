"""The static view (``--static-dir DIR``): public simple pages and files as plain files.

nginx (``devpi gen-config --static-dir``) answers a request from DIR when the file is
there and hands it to the server otherwise; the server then renders or reads, answers,
and puts the result here. The layout is the URL path itself::

    DIR/<user>/<index>/+simple/index.html|index.json            the project list
    DIR/<user>/<index>/+simple/<project>/index.html|index.json  a project page
    DIR/<user>/<index>/+f/<relpath>                             a release file

Only indexes whose whole resolution order anyone may read are materialised (one
whose acl_read changes is removed at once).

Mirror-backed project pages (a mirror's own, or a stage's with a mirror in its resolution
order) go stale without any commit: each is put with a deadline, its own remaining cache
life (what the page cache keeps it for) minus ``EXPIRY_MARGIN``, and its path is appended
to the bucket of that second (``STATE_DIR/expiry/<unix second>``) before the page lands.
Every process sweeps the buckets that are due (``sweep``, twice a second), removing the
pages they list: the cost is the pages expiring, never a scan of DIR, and the buckets of
a process that died are swept by the others or at the next start. A page served stale
(upstream down) is never put; a project list of a mirror-backed index neither (it is
replaced when the mirror's list is, not by a deadline). Commits still remove at once.

Freshness, across every process sharing DIR (``--workers N``, or several servers on one
database on one host): whoever handles a commit (the committing process before its
write is answered, every other one when its changelog poller brings the commit) removes
what the commit touched and records the commit's serial as "removed through" in
``STATE_DIR/state``, both under one ``fcntl.flock`` of ``STATE_DIR/lock``. A writer takes a
``Ticket`` *before* it reads anything: this process's ``generation`` (bumped by each
commit it handles) and the last serial its caches have absorbed. Under the same flock it
renames its file into place only if the generation is unchanged and the recorded serial
is not beyond the ticket's: a process that has not absorbed a commit yet (its caches may
still hold what came before) cannot land a page after another process removed it.

At start, DIR is kept when ``state`` names this database (its uuid) at its current serial:
every commit was removed by someone, so a worker (re)starting does not wipe what the
others serve. Anything else (no state, another database, a commit whose removal a crash
cut off, a database restored to an older serial) empties DIR.

Safety: names are checked one path segment at a time, every directory is opened
with ``O_NOFOLLOW`` relative to its parent (a symlink planted in DIR is never followed),
files are written under a temporary name and renamed (nginx never sees half a page),
directories are 0755 and files 0644 (the nginx user reads them).

Files are hard links to the blob (no second copy of a big wheel; the blob is made
0644: it holds public bytes), or copies where a link is impossible (DIR on another file
system). A blob is immutable and content-addressed, so the link never changes under nginx.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import json
import logging
import os
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("devpi.server.static")

PAGE_FILES = {"html": "index.html", "json": "index.json"}
# Pages at least this big are also kept gzipped beside themselves (``index.json.gz``) for
# nginx's gzip_static: compressing a 2,000-file page on every request held nginx to ~250
# req/s where the plain file gives thousands (tests/bench/scaleout_bench.py). Below this,
# nginx sends them as they are (its gzip_min_length in the generated site is the same).
GZIP_MIN = 1400
GZIP_SUFFIX = ".gz"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SEGMENT = 255


class UnsafeName(ValueError):
    """A path segment that could leave its directory or confuse nginx."""


def check_segment(name: str) -> str:
    if (not name or name in (".", "..") or "/" in name or "\0" in name or "\\" in name
            or len(name.encode("utf-8", "surrogatepass")) > _MAX_SEGMENT or name.startswith(".")
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise UnsafeName(f"not a static path segment: {name!r}")
    return name


MARKER = ".devpi-static-view"  # says DIR is ours to empty at start
# what the processes sharing DIR agree on (0700: nginx has no business there, and no
# location of the generated site maps to it; no index or user name starts with a dot)
STATE_DIR = ".devpi-static-state"
_OURS = (MARKER, STATE_DIR)
EXPIRY_DIR = "expiry"
# a file in the server dir: the next start empties DIR whatever the state says. ``devpi fsck
# --repair`` leaves it after quarantining blobs: DIR's hard links still reach their bytes.
RESET_REQUEST = "static-view.reset"
# seconds a mirror-backed page leaves DIR before its cache life ends: the sweeper runs every
# SWEEP_INTERVAL and removes a bucket once its second has begun
EXPIRY_MARGIN = 3.0
MIN_STATIC_LIFE = 2.0  # a page with less life left than this after the margin is not put
SWEEP_INTERVAL = 0.5
_MAX_LINE = 4 * (_MAX_SEGMENT + 1) + 16  # bytes: <user>/<index>/+simple/<project>/index.json at most
_SWEEP_GAP = 3600  # seconds of buckets tried by name; a longer gap (suspended) lists the directory


@dataclass(frozen=True)
class Ticket:
    """Taken before a page or file is read: what this process knew then (see the module
    docstring). ``serial``: the last commit its caches had absorbed."""

    generation: int
    serial: int
    taken: float = 0.0  # wall time: a mirror-backed page's deadline counts from here


def _lines(fd: int) -> Iterator[bytes]:
    """The lines of a bucket, read a piece at a time (a huge bucket is not held whole); a
    line longer than any path ``put_page`` writes is skipped."""
    pending = b""
    skipping = False  # in the middle of a line too long to be one of ours
    while chunk := os.read(fd, 1 << 16):
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            if skipping:
                skipping = False  # the long line's tail
            elif line:
                yield line
        if len(pending) > _MAX_LINE:
            pending, skipping = b"", True
    if pending and not skipping:
        yield pending


class NotAStaticDir(Exception):
    """DIR holds something the server did not put there: it will not empty it."""


class StaticView:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.lock = threading.Lock()  # this process's threads; ``_shared`` adds the other processes
        self.generation = 0
        self.written = 0  # pages and files put in place (a counter to look at in a debugger)
        self._lock_fd: int | None = None
        self._uuid = ""  # the database's (``start``)
        self._swept_through: int | None = None  # the last second swept (None: list the buckets)
        self._stopping = threading.Event()
        self.swept = 0  # mirror-backed pages removed by their deadline (likewise)

    def claim(self, serverdir: Path) -> None:
        """Make DIR (0755) and mark it ours; refuse a directory that holds anything else
        (``--static-dir ~`` must not empty a home directory) or the server's own state."""
        serverdir = serverdir.resolve()
        if self.root == serverdir or self.root in serverdir.parents or serverdir in self.root.parents:
            raise NotAStaticDir(f"{self.root} must be outside the server dir {serverdir} (and not hold it)")
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / MARKER
        if not marker.exists() and any(self.root.iterdir()):
            raise NotAStaticDir(f"{self.root} is not empty and not a static dir devpi made: give an empty "
                                f"or new directory")
        marker.touch()
        os.chmod(self.root, 0o755)
        state = self.root / STATE_DIR
        try:
            state.mkdir(mode=0o700)
        except FileExistsError:
            pass
        try:
            (state / EXPIRY_DIR).mkdir(mode=0o700)
        except FileExistsError:
            pass
        for path in (state, state / EXPIRY_DIR):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise NotAStaticDir(f"{path} is not a directory")
        try:
            self._lock_fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:  # a symlink planted there, say
            raise NotAStaticDir(f"{state / 'lock'}: {e.strerror}") from None

    # -- the state every process sharing DIR agrees on ---------------------------------
    @contextmanager
    def _shared(self) -> Iterator[None]:
        """This process's lock, then the flock the other processes take too."""
        with self.lock:
            fd = self._lock_fd
            if fd is None:  # not claimed (a view made for a test): this process alone
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _state_path(self) -> Path:
        return self.root / STATE_DIR / "state"

    def _read_state(self) -> tuple[str, int] | None:
        """With ``_shared`` held: (database uuid, removed-through serial), or None."""
        try:
            fd = os.open(self._state_path(), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        try:
            data = json.loads(raw)
            return str(data["uuid"]), int(data["serial"])
        except (ValueError, KeyError, TypeError):
            return None

    def _write_state(self, uuid: str, serial: int) -> None:
        """With ``_shared`` held: written aside and renamed (a crash leaves the old or the new)."""
        path = self._state_path()
        tmp = path.with_name(f"state.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps({"uuid": uuid, "serial": serial}).encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def start(self, uuid: str, db_serial: Callable[[], int], reset: bool = False) -> bool:
        """At start: keep DIR if the state says every commit of this database (``uuid``)
        up to its serial now (``db_serial()``, read under the flock) was removed, and no
        ``reset`` is asked for; else empty it. True if it was kept."""
        with self._shared():
            self.bump()
            serial = db_serial()
            kept = not reset and self._read_state() == (uuid, serial)
            if not kept:
                self._clear()
            self._write_state(uuid, serial)
            self._uuid = uuid
            return kept

    @contextmanager
    def commit(self, serial: int) -> Iterator[bool]:
        """Handle the commit at ``serial``: the block removes what it changed if told True,
        then the serial is recorded as removed (no process whose caches predate it lands a
        page from then on).

        False: another process recorded this serial (or a later one) already. It removed
        what this one would, and whatever landed since was read after the commit, by a
        process that had taken it in: removing again would only take fresh pages away
        (the committing worker's, rendered at once, which its page cache then answers
        while nginx asks it for every request)."""
        with self._shared():
            self.bump()
            state = self._read_state() if self._lock_fd is not None else None
            if state is not None and state[1] >= serial:
                yield False
                return
            yield True
            if self._lock_fd is not None:
                self._write_state(self._uuid, serial)

    def behind(self, ticket: Ticket) -> bool:
        """Whether a commit came since ``ticket`` (here, or recorded by another process
        this one had not taken in then). What was rendered with it must then not be kept
        in the page cache either: a page kept there but refused here is answered by this
        process from its cache to every request nginx passes on, and never reaches DIR
        (until the next commit), which under load held one worker's page out of DIR."""
        with self._shared():
            return not self._may_land(ticket)

    def _may_land(self, ticket: Ticket) -> bool:
        """With ``_shared`` held: no commit since the ticket (here or in another process)."""
        if ticket.generation != self.generation:
            return False
        if self._lock_fd is None:
            return True
        state = self._read_state()
        return state is not None and state[1] <= ticket.serial

    # -- writing ----------------------------------------------------------------------
    def put_page(self, user: str, index: str, project: str, fmt: str, body: bytes, ticket: Ticket,
                 max_age: float | None = None) -> bool:
        """A rendered page ("" project: the project list), if no commit came since ``ticket``.

        ``max_age``: a mirror-backed project page's remaining cache life when the ticket was
        taken; it leaves DIR ``EXPIRY_MARGIN`` seconds before that (not put if too short)."""
        parts = [user, index, "+simple"] + ([project] if project else [])
        expires = None
        if max_age is not None:
            if not project:
                raise UnsafeName("a project list has no deadline")
            expires = ticket.taken + max_age - EXPIRY_MARGIN
            if expires - time.time() < MIN_STATIC_LIFE:
                return False
        gz = gzip.compress(body, 6, mtime=0) if len(body) >= GZIP_MIN else None
        return self._put(parts, PAGE_FILES[fmt], ticket, data=body, expires=expires, gz=gz)

    def put_file(self, user: str, index: str, relpath: str, blob: Path, ticket: Ticket) -> bool:
        """A release file at its ``+f/...`` path: a hard link to ``blob`` (or a copy)."""
        segments = relpath.split("/")
        if len(segments) != 4 or segments[0] != "+f":  # +f/<hash dirs>/<filename>, as stages name them
            raise UnsafeName(f"not a file path: {relpath!r}")
        return self._put([user, index, *segments[:-1]], segments[-1], ticket, blob=blob)

    def _put(self, parts: list[str], name: str, ticket: Ticket, data: bytes | None = None,
             blob: Path | None = None, expires: float | None = None, gz: bytes | None = None) -> bool:
        """``gz``: the page gzipped, landed as ``name.gz`` just before the page itself (a
        page without one takes any ``.gz`` of an earlier version away)."""
        for part in (*parts, name):
            check_segment(part)
        if ticket.generation != self.generation:
            return False
        try:
            dfd = self._open_dirs(parts, create=True)
        except OSError as e:  # a symlink or a file where a directory belongs: not ours to follow
            log.warning("static view: not writing %s/%s: %s", "/".join(parts), name, e)
            return False
        token = secrets.token_hex(6)
        tmp, tmp_gz = f".{name[:200]}.{token}.tmp", f".{name[:200]}.{token}.gz.tmp"
        try:
            self._write_temp(dfd, tmp, data, blob)
            if gz is not None:
                self._write_temp(dfd, tmp_gz, gz, None)
            with self._shared():
                if not self._may_land(ticket):
                    return False
                if expires is not None:  # listed before it lands: a crash leaves it swept
                    self._add_to_bucket(int(expires), "/".join((*parts, name)))
                if gz is not None:
                    os.rename(tmp_gz, name + GZIP_SUFFIX, src_dir_fd=dfd, dst_dir_fd=dfd)
                elif data is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name + GZIP_SUFFIX, dir_fd=dfd)
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a planted link, never follows it
                self.written += 1
            return True
        except OSError as e:
            log.warning("static view: could not write %s/%s: %s", "/".join(parts), name, e)
            return False
        finally:
            for leftover in (tmp, tmp_gz):
                with contextlib.suppress(OSError):
                    os.unlink(leftover, dir_fd=dfd)
            os.close(dfd)

    @staticmethod
    def _write_temp(dfd: int, tmp: str, data: bytes | None, blob: Path | None) -> None:
        if blob is not None:
            try:
                os.link(blob, tmp, dst_dir_fd=dfd, follow_symlinks=False)
                os.chmod(blob, 0o644)  # the link's inode is the blob's: nginx's user must read it
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
            with open(blob, "rb") as src:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                             dir_fd=dfd)
                with os.fdopen(fd, "wb") as dst:
                    os.fchmod(fd, 0o644)
                    shutil.copyfileobj(src, dst, 1 << 20)
            return
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o644)  # whatever the umask
            f.write(data or b"")

    def _open_dirs(self, parts: Iterable[str], create: bool) -> int:
        """A descriptor of DIR/parts..., each step opened without following a symlink."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                made = False
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        pass
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
                if made:
                    os.fchmod(fd, 0o755)  # whatever the umask: the nginx user walks it
            return fd
        except BaseException:
            os.close(fd)
            raise

    # -- mirror-backed pages' deadlines --------------------------------------------------
    def _expiry_fd(self) -> int:
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            sfd = os.open(STATE_DIR, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        try:
            return os.open(EXPIRY_DIR, _DIR_FLAGS, dir_fd=sfd)
        finally:
            os.close(sfd)

    def _add_to_bucket(self, second: int, path: str) -> None:
        """With ``_shared`` held: ``path`` (relative to DIR) is to go at ``second``."""
        efd = self._expiry_fd()
        try:
            fd = os.open(str(second), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=efd)
        finally:
            os.close(efd)
        try:
            os.write(fd, path.encode("utf-8", "surrogateescape") + b"\n")
        finally:
            os.close(fd)

    def sweep(self, now: float | None = None) -> int:
        """Remove the mirror-backed pages whose deadline has come; how many were there.
        Buckets are tried by name from the last second swept (the first sweep of a process,
        or one after a long gap, lists them: a dead process's are among them)."""
        if self._lock_fd is None:
            return 0
        through = int(time.time() if now is None else now)
        removed = 0
        with self._shared():
            efd = self._expiry_fd()
            try:
                last = self._swept_through
                if last is None or through - last > _SWEEP_GAP:
                    due = sorted(int(n) for n in os.listdir(efd) if n.isdigit() and len(n) < 16 and int(n) <= through)
                else:
                    due = list(range(last + 1, through + 1))
                for second in due:
                    removed += self._sweep_bucket(efd, str(second))
            finally:
                os.close(efd)
            self._swept_through = through
            self.swept += removed
        return removed

    def _sweep_bucket(self, efd: int, name: str) -> int:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=efd)
        except FileNotFoundError:
            return 0
        except OSError:  # a symlink or a fifo planted there: not read, taken away
            self._unlink_bucket(efd, name)
            return 0
        count = 0
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                for line in _lines(fd):
                    count += self._sweep_line(line, name)
        finally:
            os.close(fd)
        self._unlink_bucket(efd, name)
        return count

    def _sweep_line(self, line: bytes, bucket: str) -> int:
        parts = line.decode("utf-8", "surrogateescape").split("/")
        # only what ``put_page`` lists: <user>/<index>/+simple/<project>/index.<fmt>
        if len(parts) != 5 or parts[2] != "+simple" or parts[4] not in PAGE_FILES.values():
            log.warning("static view: ignoring %r in expiry bucket %s", line[:200], bucket)
            return 0
        return int(self._remove_page(parts))  # checks every segment, follows no symlink

    @staticmethod
    def _unlink_bucket(efd: int, name: str) -> None:
        try:
            os.unlink(name, dir_fd=efd)
        except FileNotFoundError:
            pass
        except OSError as e:  # a directory planted there: not ours to empty
            log.warning("static view: cannot remove expiry bucket %r: %s", name[:200], e)

    def run_sweeper(self) -> threading.Thread:
        """Sweep every ``SWEEP_INTERVAL`` in a daemon thread until ``close``."""
        def loop() -> None:
            while not self._stopping.wait(SWEEP_INTERVAL):
                try:
                    self.sweep()
                except Exception:  # a bad bucket must not stop the sweeping
                    log.exception("static view: sweep failed")

        thread = threading.Thread(target=loop, name="static-sweeper", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._stopping.set()

    # -- removing -----------------------------------------------------------------------
    def bump(self) -> None:
        """With ``lock`` held: a commit arrived; what this process read before it may not land."""
        self.generation += 1

    def _remove(self, parts: list[str], listed: bool = False) -> bool:
        """Remove DIR/parts (a file, a symlink or a whole tree), never following a symlink.
        ``listed``: the last name comes from listing its directory (a temp name may start
        with a dot), the others are checked as usual. True if something was removed."""
        try:
            for part in parts[:-1] if listed else parts:
                check_segment(part)
            dfd = self._open_dirs(parts[:-1], create=False)
        except (OSError, UnsafeName):
            return False  # not there (or not ours to walk into): nothing to remove
        try:
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(parts[-1], dir_fd=dfd)  # fd-based on Linux: symlinks are removed, not followed
            else:
                os.unlink(parts[-1], dir_fd=dfd)
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            log.warning("static view: could not remove %s: %s", "/".join(parts), e)
            return False
        finally:
            os.close(dfd)

    def _remove_page(self, parts: list[str]) -> bool:
        """A page and its gzipped copy: the copy first (nginx prefers it)."""
        self._remove([*parts[:-1], parts[-1] + GZIP_SUFFIX])
        return self._remove(parts)

    def _index_dirs(self) -> list[tuple[str, str]]:
        found = []
        try:
            users = os.listdir(self.root)
        except OSError:
            return found
        for user in users:
            upath = self.root / user
            if upath.is_symlink() or not upath.is_dir():
                continue
            try:
                found.extend((user, index) for index in os.listdir(upath))
            except OSError:
                pass
        return found

    def drop_project(self, project: str) -> None:
        """Inside ``commit``: project's pages on every index (inheritance shows a project
        on indexes that do not hold it) and every project list."""
        for user, index in self._index_dirs():
            for page in PAGE_FILES.values():
                self._remove_page([user, index, "+simple", page])
            if project:
                self._remove([user, index, "+simple", project])

    def drop_pages(self) -> None:
        """Inside ``commit``: every page (an index or user changed: any page may have)."""
        for user, index in self._index_dirs():
            self._remove([user, index, "+simple"])

    def drop_file(self, user: str, index: str, relpath: str) -> None:
        """Inside ``commit``."""
        self._remove([user, index, *relpath.split("/")])

    def keep_only(self, indexes: set[str]) -> None:
        """Inside ``commit``: remove every index (and user) directory not in ``indexes``
        (deleted, or no longer readable by anyone)."""
        users = {name.split("/", 1)[0] for name in indexes}
        for user, index in self._index_dirs():
            if f"{user}/{index}" not in indexes:
                self._remove([user, index], listed=True)
        for name in os.listdir(self.root):
            if name not in users and name not in _OURS:
                self._remove([name], listed=True)

    def _clear(self) -> None:
        """With ``_shared`` held: empty DIR but for what says it is ours (the expiry buckets
        go too: what they list is gone)."""
        for name in os.listdir(self.root):
            if name not in _OURS:
                self._remove([name], listed=True)
        if self._lock_fd is not None:
            efd = self._expiry_fd()
            try:
                for name in os.listdir(efd):
                    self._unlink_bucket(efd, name)
            finally:
                os.close(efd)
