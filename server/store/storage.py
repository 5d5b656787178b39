"""The SQL store: engines, transactions, and the serial/changelog spine.

Every write transaction takes the serial lock first (``BEGIN IMMEDIATE`` on
SQLite, ``SELECT ... FOR UPDATE`` on PostgreSQL), so writers from any number
of processes are serialised and each commit gets exactly the next serial and
one changelog row describing what changed. Caches, ETags and replicas are
keyed by those serials. Other processes' commits are picked up by a small
poller that reads the changelog, so per-process caches stay coherent.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.engine import Connection, Engine

from . import row_journal, schema, snapshot_apply

log = logging.getLogger("devpi.server.storage")
ANNOUNCE_WAIT = 0.05  # seconds a commit waits for the one before it to be announced, before
# reading it from the changelog (another process's commit is never announced here by its thread)

Change = dict[str, Any]
CommitListener = Callable[[int, list[Change]], None]


def dumps(obj: Any) -> str:
    """Canonical JSON for stored values: same data, same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def kv_get(conn: Connection, key: str) -> str | None:
    """A server-wide value (``kv`` table): the serial, the secret, counters."""
    row = conn.execute(select(schema.kv.c.value).where(schema.kv.c.key == key)).first()
    return row[0] if row else None


def kv_set(conn: Connection, key: str, value: str) -> None:
    """Set a server-wide value inside the caller's write transaction (which serialises
    writers, so the insert after a missed update cannot race another one)."""
    if conn.execute(update(schema.kv).where(schema.kv.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(insert(schema.kv).values(key=key, value=value))


class SerialGap(RuntimeError):
    """A replicated serial that is not the next one of this server."""


class ReadOnlyStorage(RuntimeError):
    """A write on a server whose serials come from elsewhere (a replica): it would give this
    server a serial its primary does not have, and the next replicated one would not fit."""


class SnapshotRefused(RuntimeError):
    """A snapshot offered to a database that already holds a state of its own."""


@dataclass
class WriteTx:
    conn: Connection
    serial: int  # the serial this transaction will commit as
    who: str | None
    changes: list[Change] = field(default_factory=list)
    _after_commit: list[Callable[[], None]] = field(default_factory=list)

    def record(self, kind: str, **data: Any) -> None:
        """Say what changed; becomes part of this serial's changelog entry."""
        self.changes.append({"kind": kind, **data})

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after_commit.append(fn)


# SQLite's memory in this process (page caches of all pooled connections, statements): a
# soft limit, past which it reuses its cached pages instead of growing. Each of the up to
# 112 pooled connections may otherwise cache 2 MiB (SQLite's default cache_size); the
# operating system caches the database file anyway.
SQLITE_HEAP_LIMIT = 16 << 20


def _sqlite_engine(path: Path) -> Engine:
    # Enough pooled connections for every worker thread: an overflow connection is closed
    # after use, and opening one (WAL pragmas) cost a tenth of a cold mirror request.
    engine = create_engine(f"sqlite:///{path}", pool_size=48, max_overflow=64,
                           connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute(f"PRAGMA soft_heap_limit={int(SQLITE_HEAP_LIMIT)}")  # process-wide
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("devpi_write")
                             else "BEGIN")

    return engine


def _postgresql_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


class Storage:
    def __init__(self, url: str, *, poll_interval: float = 0.5):
        self.url = url
        self.is_sqlite = url.startswith("sqlite:")
        if self.is_sqlite:
            self.engine = _sqlite_engine(Path(url[len("sqlite:///"):]))
        elif url.startswith("postgresql"):
            self.engine = _postgresql_engine(url)
        else:
            raise ValueError(f"unsupported storage URL {url!r}: use sqlite:///PATH or postgresql://...")
        row_journal.install(self.engine)
        # set on a replica (why, naming the primary): write() refuses, apply_replicated() writes
        self.read_only_reason: str | None = None
        self._listeners: list[CommitListener] = []
        self._serial_lock = threading.Lock()
        self._serial_cond = threading.Condition(self._serial_lock)
        self._turn = threading.Condition()  # announcing commits, one at a time and in order
        self.current_serial = -1
        self._dispatched_serial = -1
        self._poll_interval = poll_interval
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- set-up -----------------------------------------------------------
    def init_serial(self) -> None:
        with self.engine.connect() as conn:
            serial = kv_get(conn, "serial")
            conn.rollback()
        self.current_serial = self._dispatched_serial = int(serial) if serial is not None else -1

    def start_poller(self) -> None:
        """Pick up commits made by other processes (several servers on one database)."""
        self._poller = threading.Thread(target=self._poll_loop, name="changelog-poller", daemon=True)
        self._poller.start()

    def warm_pool(self, n: int) -> None:
        """Open ``n`` pooled connections now: a burst of first requests (a cold install
        asks for 25 pages at once) would otherwise open them one per request thread, each
        with its pragmas (SQLite) or its login round trips (PostgreSQL)."""
        conns = []
        try:
            for _ in range(n):
                conns.append(self.engine.connect())
        finally:
            for conn in conns:
                conn.close()  # back to the pool, open

    def close(self) -> None:
        self._stopping.set()
        self.engine.dispose()

    def add_listener(self, fn: CommitListener) -> None:
        self._listeners.append(fn)

    # -- transactions -----------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: one consistent snapshot (WAL / MVCC)."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    def _locked_serial(self, conn: Connection) -> int:
        """The current serial, read under the serial lock every writer takes first
        (``BEGIN IMMEDIATE`` on SQLite already holds it; ``FOR UPDATE`` on PostgreSQL)."""
        q = select(schema.kv.c.value).where(schema.kv.c.key == "serial")
        if not self.is_sqlite:
            q = q.with_for_update()
        row = conn.execute(q).first()
        return int(row[0]) if row else -1

    @contextmanager
    def write(self, who: str | None = None, *, journaled: bool = True) -> Iterator[WriteTx]:
        """A write transaction at the next serial. Its rows go to the row journal for replicas
        (store/row_journal.py); ``journaled=False`` only for an import, which brings the
        changelog of serials written elsewhere (a replica starts after them)."""
        if self.read_only_reason is not None:
            raise ReadOnlyStorage(self.read_only_reason)
        journal = row_journal.RowJournal() if journaled else None
        with self.engine.connect() as conn:
            conn = conn.execution_options(devpi_write=True, **{row_journal.OPTION: journal})
            with conn.begin():
                tx = WriteTx(conn=conn, serial=self._locked_serial(conn) + 1, who=who)
                yield tx
                images = journal.images(conn) if journal is not None else []
                if images and not tx.changes:
                    raise row_journal.JournalError(
                        f"a write transaction changed rows ({', '.join(sorted({i['t'] for i in images}))}) "
                        "without saying so in the changelog: replicas would never see them")
                if tx.changes and journal is not None:
                    conn.execute(insert(schema.replication_rows).values(serial=tx.serial, rows=dumps(images)))
                    conn.execute(insert(schema.changelog).values(
                        serial=tx.serial, created=time.time(), who=who, changes=dumps(tx.changes)))
                    kv_set(conn, "serial", str(tx.serial))
        if tx.changes:
            self._dispatch([(tx.serial, tx.changes)])
        for fn in tx._after_commit:
            fn()

    def apply_replicated(self, serial: int, created: float, who: str | None, changes: list[Change],
                         rows: list[dict[str, Any]]) -> None:
        """A replica takes over one of its primary's serials: in one transaction, only as the
        very next serial, the rows (store/row_journal.py), the same changelog and journal row,
        and the serial; then the commit is announced like a local one (page cache, search,
        static view). Anything wrong (a gap, an unknown table or column, a server-local kv
        row) raises and rolls the whole serial back: a replica holds a serial completely or
        not at all."""
        for image in rows:
            if image.get("t") == "kv" and list(image.get("k") or [None])[0] in row_journal.LOCAL_KV:
                raise row_journal.JournalError("the rows of a serial may not set this server's own kv rows")
        with self.engine.connect() as conn:
            conn = conn.execution_options(devpi_write=True)
            with conn.begin():
                last = self._locked_serial(conn)
                if serial != last + 1:
                    raise SerialGap(f"serial {serial} is not the next one: this server is at {last}")
                row_journal.apply(conn, rows)
                conn.execute(insert(schema.replication_rows).values(serial=serial, rows=dumps(rows)))
                conn.execute(insert(schema.changelog).values(serial=serial, created=created, who=who,
                                                             changes=dumps(changes)))
                kv_set(conn, "serial", str(serial))
        self._dispatch([(serial, changes)])

    def load_snapshot(self, serial: int, load: Callable[[Connection], None], replacing: int | None = None) -> None:
        """A replica takes its primary's snapshot (store/snapshot_apply.py): ``load`` fills
        the tables in one transaction with the serial, so a replica killed or refused halfway
        holds nothing of it. Only into a database without a serial or rows, or, with
        ``replacing``, over this replica's own state at exactly that (earlier) serial.
        Before the server reads the database: nothing is announced."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(devpi_write=True)
            with conn.begin():
                last = self._locked_serial(conn)
                if replacing is None:
                    filled = snapshot_apply.first_filled(conn)
                    if last >= 0 or filled is not None:
                        raise SnapshotRefused(f"this database is not empty (serial {last}, rows in {filled}): "
                                              "a snapshot goes only into an empty one")
                else:
                    if last != replacing or serial <= last:
                        raise SnapshotRefused(f"the snapshot of serial {serial} would not move this replica "
                                              f"on from its serial {last}")
                    snapshot_apply.clear(conn)
                load(conn)
                kv_set(conn, "serial", str(serial))

    @contextmanager
    def cache_write(self) -> Iterator[Connection]:
        """A write transaction for data outside the serial and the changelog (the mirrors'
        copy of upstream, written as upserts): on PostgreSQL it does not take the serial
        lock, so the cache writes of many processes never queue behind an upload's commit
        or each other. On SQLite every write takes the database's one write lock anyway.

        Such a commit does not wait for the disk (SQLite ``synchronous=NORMAL``, PostgreSQL
        ``synchronous_commit=off``): a power loss or OS crash may undo the last of them,
        never leave the database inconsistent, and an undone cache row costs one more
        upstream request (a blob whose row was undone is taken up again by its hash, or
        downloaded again).
        The wait was one more fsync on every cold page and file. Blobs are still fsynced
        before the row naming them commits, and every other transaction still waits for
        the disk, which also makes every cache row committed before it durable."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(devpi_write=True)
            if not self.is_sqlite:
                with conn.begin():
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    yield conn
                return
            raw = conn.connection.driver_connection  # outside a transaction: sqlite3 in autocommit
            raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    yield conn
            finally:
                raw.execute("PRAGMA synchronous=FULL")  # the pooled connection serves uploads next

    # -- serial notification ---------------------------------------------
    def _dispatch(self, entries: list[tuple[int, list[Change]]]) -> None:
        for serial, changes in sorted(entries, key=lambda e: e[0]):
            self._announce(serial, changes)

    def _announce(self, serial: int, changes: list[Change]) -> None:
        """Tell the listeners of one commit, strictly in serial order and each serial once.

        Commits are serial by serial, but the threads that made them reach this point in
        any order: announcing N+1 first used to mark N as done too, so N's changes never
        reached the caches and the search index. So a commit waits for the one before it
        (whose thread is about to announce it); if that does not come at once, it reads
        the missing ones from the changelog itself (another process's, say)."""
        with self._turn:
            if not self._turn.wait_for(lambda: self._dispatched_serial >= serial - 1, ANNOUNCE_WAIT):
                self._announce_missing(serial)
            if serial <= self._dispatched_serial:
                return  # the poller or a gap filler was first
            self._call_listeners(serial, changes)
            self._dispatched_serial = serial
            self._turn.notify_all()
        with self._serial_cond:
            self.current_serial = max(self.current_serial, serial)
            self._serial_cond.notify_all()

    def _announce_missing(self, before: int) -> None:
        """Under ``_turn``: announce the changelog's commits from the last announced up to
        ``before`` (exclusive)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.changelog.c.serial, schema.changelog.c.changes)
                                .where(schema.changelog.c.serial > self._dispatched_serial,
                                       schema.changelog.c.serial < before)
                                .order_by(schema.changelog.c.serial)).all()
            conn.rollback()
        for row in rows:
            self._call_listeners(row.serial, json.loads(row.changes))
            self._dispatched_serial = row.serial
        if rows:
            log.debug("announced serials %s-%s from the changelog (not announced by a thread here yet)",
                        rows[0].serial, rows[-1].serial)

    def _call_listeners(self, serial: int, changes: list[Change]) -> None:
        for fn in self._listeners:
            try:
                fn(serial, changes)
            except Exception:  # a listener must never break a commit
                log.exception("commit listener failed at serial %s", serial)

    @property
    def dispatched_serial(self) -> int:
        """The last commit every listener (this process's caches) has taken in: what is read
        after reading this reflects at least that serial."""
        return self._dispatched_serial

    def wait_for_serial(self, serial: int, timeout: float) -> bool:
        with self._serial_cond:
            return self._serial_cond.wait_for(lambda: self.current_serial >= serial, timeout)

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self._poll_interval):
            try:
                self.poll_once()
            except Exception:
                log.debug("changelog poll failed", exc_info=True)

    def poll_once(self) -> None:
        seen = self._dispatched_serial
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.changelog.c.serial, schema.changelog.c.changes)
                                .where(schema.changelog.c.serial > seen)
                                .order_by(schema.changelog.c.serial).limit(1000)).all()
            conn.rollback()
        if rows:
            self._dispatch([(r.serial, json.loads(r.changes)) for r in rows])

    def changelog_entry(self, serial: int) -> dict | None:
        with self.read() as conn:
            row = conn.execute(select(schema.changelog).where(schema.changelog.c.serial == serial)).first()
        if row is None:
            return None
        return {"serial": row.serial, "created": row.created, "who": row.who,
                "changes": json.loads(row.changes)}

