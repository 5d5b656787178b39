"""The replica's follower: one long request at a time to the primary's feed, applied serial by serial.

It asks for everything after its own serial (read from the database each time, so a
restart, even after a SIGKILL, continues where the last committed serial left off), applies
each line in its own transaction, and hands the files it names to the blob fetcher. When a
response ends it asks again at once; on an error it waits, 1 s doubling to 30 s, and says
what went wrong in /+status. A line it refuses (too long, malformed, unknown table, not the
next serial) stops that response with nothing of the line stored.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import requests
from sqlalchemy import select

from ..store import schema
from ..store.row_journal import JournalError
from ..store.storage import SerialGap, kv_get
from .entry import BadFeed, Entry, lines, parse, rows_refused
from .feed import NO_JOURNAL_CODE, PROBLEM_HEADER
from .secret import HEADER
from .snapshot_load import SnapshotFailed, fetch_and_load
from .state import ReplicaState

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("devpi.server.replication")
WAIT = 25.0  # seconds the primary holds a caught-up request (feed.MAX_WAIT)
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = WAIT + 20.0  # no byte for this long: the connection is dead
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
CHUNK = 256 << 10
RESUME_CONNECT_TIMEOUT = 5.0  # seconds a restarting replica gives the primary before starting as is


class FeedError(Exception):
    """A response that could not be used; ``unreachable`` if the primary could not be asked,
    ``status`` the primary's answer if it was not 200."""

    def __init__(self, message: str, unreachable: bool = False, status: int | None = None):
        super().__init__(message)
        self.unreachable = unreachable
        self.status = status


class Follower:
    def __init__(self, core: Core, state: ReplicaState, secret: str,
                 on_entry: Callable[[Entry], None] = lambda entry: None):
        self.core = core
        self.state = state
        self.secret = secret
        self.on_entry = on_entry
        self.url = state.primary_url.rstrip("/") + "/+replica/changes"
        self._session = requests.Session()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def local_serial(self) -> int:
        return self._position()[0]

    def _position(self) -> tuple[int, float | None]:
        """This replica's serial and the time its changelog row says it was written (the
        primary checks it is its own serial of that number: feed.FORKED)."""
        cl = schema.changelog
        with self.core.storage.read() as conn:
            value = kv_get(conn, "serial")
            serial = int(value) if value is not None else -1
            created = conn.execute(select(cl.c.created).where(cl.c.serial == serial)).scalar()
        return serial, created

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="replica-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        pause = BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                self.follow_once(WAIT)
                pause = BACKOFF_FIRST
            except FeedError as e:
                self.state.failed(str(e), unreachable=e.unreachable)
                log.warning("replica: %s; asking again in %.0f s", e, pause)
                if self._stopping.wait(pause):
                    return
                pause = min(BACKOFF_MAX, pause * 2)
            except Exception as e:  # a bug must not end replication for good
                log.exception("replica: following the primary failed")
                self.state.failed(f"internal error: {type(e).__name__}", unreachable=False)
                if self._stopping.wait(pause):
                    return
                pause = min(BACKOFF_MAX, pause * 2)

    def follow_once(self, wait: float) -> int:
        """One request: apply what it brings; the number of serials applied."""
        since, created = self._position()
        params: dict[str, object] = {"since": since, "wait": wait}
        if created is not None:
            params["at"] = repr(float(created))
        try:
            resp = self._session.get(self.url, params=params, stream=True,
                                     headers={HEADER: self.secret, "Accept": "application/x-ndjson"},
                                     timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False)
        except requests.RequestException as e:
            raise FeedError(f"cannot reach the primary at {self.state.primary_url}: {type(e).__name__}",
                            unreachable=True) from None
        applied = 0
        with resp:
            primary_serial = _int_header(resp.headers.get("X-Devpi-Serial"))
            if resp.status_code != 200:
                raise FeedError(f"the primary answered {resp.status_code}: {_message(resp)}",
                                status=resp.status_code)
            self._check_lineage(resp.headers.get("X-Devpi-Uuid"), since)
            self.state.heard(primary_serial)
            try:
                for line in lines(resp.iter_content(CHUNK)):
                    entry = parse(line)
                    self.core.storage.apply_replicated(entry.serial, entry.created, entry.who,
                                                       entry.changes, entry.rows)
                    applied += 1
                    self.on_entry(entry)
            except (BadFeed, JournalError, SerialGap) as e:
                raise FeedError(f"refused from the primary: {e}") from None
            except requests.RequestException as e:
                raise FeedError(f"the connection to the primary broke: {type(e).__name__}",
                                unreachable=True) from None
            except Exception as e:
                why = rows_refused(e)
                if why is None:
                    raise
                raise FeedError(f"refused from the primary: {why}") from None
        local = self.local_serial()
        if primary_serial is None or local >= primary_serial:
            self.state.caught_up(local)
        return applied

    def _check_lineage(self, primary_uuid: str | None, since: int) -> None:
        """A replica's database must be the primary's: the same uuid (replicated with serial 0)."""
        if since < 0:
            return
        with self.core.storage.read() as conn:
            mine = kv_get(conn, "uuid")
        if primary_uuid and mine and primary_uuid != mine:
            raise FeedError(f"this replica's database belongs to another server (uuid {mine}, the primary "
                            f"is {primary_uuid[:64]}): start the replica from an empty server dir")

    def resume(self) -> None:
        """At the start of a replica that has a state: if its primary can no longer feed it
        from its serial (409, no row images there: the primary was imported or restored since,
        and ``at`` showed the replica's serial is the primary's own), replace the state with
        the primary's snapshot in one transaction. Any other answer, or none: start as is
        (the follower asks again; /+status says why)."""
        since, created = self._position()
        params: dict[str, object] = {"since": since, "wait": 0}
        if created is not None:
            params["at"] = repr(float(created))
        try:
            with self._session.get(self.url, params=params, headers={HEADER: self.secret}, stream=True,
                                   timeout=(RESUME_CONNECT_TIMEOUT, RESUME_CONNECT_TIMEOUT),
                                   allow_redirects=False) as resp:
                if resp.status_code != 409 or resp.headers.get(PROBLEM_HEADER) != NO_JOURNAL_CODE:
                    return
        except requests.RequestException:
            return
        try:
            serial = fetch_and_load(self.core, self.state.primary_url, self.secret, self._session, replacing=since)
        except SnapshotFailed as e:
            log.warning("replica start: %s", e)
            self.state.failed(str(e), unreachable=e.unreachable)
            return
        log.warning("replica start: the primary cannot send serial %s on; replaced this replica's state with "
                    "its snapshot of serial %s", since + 1, serial)

    def bootstrap(self, budget: float) -> None:
        """Block until serial 0 (the primary's first start) is here, or SystemExit in one line.
        A primary that cannot send serial 0 (409: no row images, it was imported or upgraded)
        sends a snapshot instead (snapshot_load.py), and the replica follows from its serial."""
        deadline = time.monotonic() + budget
        pause = BACKOFF_FIRST
        while True:
            try:
                self.follow_once(0)
                if self.local_serial() >= 0:
                    return
                problem = "the primary has no serial yet"
            except FeedError as e:
                problem = str(e)
                if e.status == 409 and self.local_serial() < 0:
                    try:
                        serial = fetch_and_load(self.core, self.state.primary_url, self.secret, self._session)
                    except SnapshotFailed as s:
                        problem = str(s)
                        self.state.failed(problem, unreachable=s.unreachable)
                    else:
                        log.warning("replica start: the primary cannot send its early serials; took its "
                                    "snapshot of serial %s and follows from there", serial)
                        continue
            if time.monotonic() + pause > deadline:
                raise SystemExit(f"devpi server: replica start: {problem}")
            log.warning("replica start: %s; asking again in %.0f s", problem, pause)
            time.sleep(pause)
            pause = min(BACKOFF_MAX, pause * 2)


def _int_header(text: str | None) -> int | None:
    try:
        return int(text) if text is not None and len(text) < 20 else None
    except ValueError:
        return None


def _message(resp: requests.Response) -> str:
    try:
        body = resp.raw.read(4096, decode_content=True)
        import json

        doc = json.loads(body)
        return str(doc.get("message", ""))[:300] if isinstance(doc, dict) else ""
    except Exception:
        return ""
