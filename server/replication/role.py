"""This server's part in replication, made from the command line before the database opens.

``--primary-url URL --replica-secret-file FILE``: a replica. ``--replica-secret-file FILE``
alone: a primary that feeds replicas. Neither: a primary without a feed (its feed answers
404). The options are checked here, each error one line, before anything is started.
"""
from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .secret import read_secret_file

if TYPE_CHECKING:
    from ..core import Core
    from .blob_fetch import BlobFetcher
    from .follower import Follower
    from .mirror_sync import MirrorSync
    from .state import ReplicaState

DEFAULT_MAX_LAG = 300.0  # seconds behind the primary past which a replica's /+health says 503
BOOTSTRAP_BUDGET = 60.0  # seconds a fresh replica's start waits for the primary's first serial


def _primary_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise SystemExit(f"devpi server: --primary-url must be an http(s) URL without credentials, "
                         f"query or fragment, not {text[:200]!r}")
    return text.rstrip("/")


class Primary:
    """A primary: the feed is on when it has a secret."""

    wire_role = "MASTER"

    def __init__(self, secret: str | None):
        self.secret = secret

    def status(self) -> dict[str, Any]:
        return {"role": "primary", "feed": self.secret is not None}

    def health_problem(self) -> str | None:
        return None


class Replica:
    """A replica: follows ``primary_url`` (follower.py), fetches files (blob_fetch.py)."""

    wire_role = "REPLICA"

    def __init__(self, primary_url: str, secret: str, max_lag: float, start_wait: float = BOOTSTRAP_BUDGET,
                 write_wait: float | None = None):
        from .forward import SERIAL_WAIT, ForwardStats
        from .state import ReplicaState

        self.write_wait = SERIAL_WAIT if write_wait is None else write_wait
        self.writes = ForwardStats()  # writes forwarded to the primary (forward.py), for /+status
        self.primary_url = primary_url
        self.secret = secret
        self.start_wait = start_wait
        self.state: ReplicaState = ReplicaState(primary_url, max_lag)
        self.core: Core | None = None
        self.follower: Follower | None = None
        self.blobs: BlobFetcher | None = None
        self.mirror_sync: MirrorSync | None = None

    def attach(self, core: Core) -> None:
        """Before ``core.setup``: the follower (which bootstraps a fresh database) and the fetcher."""
        from .blob_fetch import BlobFetcher
        from .follower import Follower
        from .mirror_source import MirrorThroughPrimary
        from .mirror_sync import MirrorSync, MirrorSyncState

        self.core = core
        self.blobs = BlobFetcher(core, self.primary_url, self.secret)
        self.follower = Follower(core, self.state, self.secret, self._on_entry)
        core.replication = self
        # its serials are its primary's: a local write (a sweeper, a plugin) would fork them
        core.storage.read_only_reason = f"this server is a replica of {self.primary_url}: it writes nothing itself"
        core.response_headers = self.state.headers
        core.fetch_missing_blob = self.blobs.fetch_now
        # mirror indexes take the primary's cache and fetch what it lacks through it, never from
        # the upstream (mirror/through_primary.py)
        mirror_state = MirrorSyncState()
        core.mirror_source = MirrorThroughPrimary(self.primary_url, self.secret, self.state, mirror_state,
                                                  self.blobs)
        # pages rendered while the primary answered list files this replica may not hold
        self.state.on_reachability = lambda reachable: core.page_cache.clear()
        self.mirror_sync = MirrorSync(core, self.primary_url, self.secret, self.state, self.blobs, mirror_state)

    def _on_entry(self, entry: Any) -> None:
        assert self.blobs is not None
        for sha256, size in entry.blobs():
            self.blobs.enqueue(entry.serial, sha256, size)

    def bootstrap(self) -> None:
        assert self.follower is not None
        self.follower.bootstrap(self.start_wait)

    def resume(self) -> None:
        assert self.follower is not None
        self.follower.resume()

    def start(self) -> None:
        assert self.follower is not None and self.blobs is not None
        self.blobs.start()
        self.follower.start()
        if self.mirror_sync is not None:
            self.mirror_sync.start()

    def stop(self) -> None:
        if self.follower is not None:
            self.follower.stop()
        if self.blobs is not None:
            self.blobs.stop()
        if self.mirror_sync is not None:
            self.mirror_sync.stop()

    def _local_serial(self) -> int:
        return self.core.storage.current_serial if self.core is not None else -1

    def status(self) -> dict[str, Any]:
        doc = self.state.status(self._local_serial())
        doc["files"] = self.blobs.status() if self.blobs is not None else {}
        doc["writes"] = self.writes.status()
        doc["mirrors"] = self.mirror_sync.state.status() if self.mirror_sync is not None else {}
        return doc

    def health_problem(self) -> str | None:
        lag = self.state.lag_seconds(self._local_serial())
        if lag > self.state.max_lag:
            why = f"; last error: {self.state.last_error}" if self.state.last_error else ""
            return f"replica lag {lag:.0f} s is beyond --replica-max-lag {self.state.max_lag:.0f} s{why}"
        return None


def from_args(args: argparse.Namespace) -> Primary | Replica:
    """The role the options ask for (SystemExit with one line for a wrong combination)."""
    secret_file: Path | None = getattr(args, "replica_secret_file", None)
    primary_url: str | None = getattr(args, "primary_url", None)
    secret = read_secret_file(secret_file) if secret_file is not None else None
    if primary_url is None:
        return Primary(secret)
    url = _primary_url(primary_url)
    if secret is None:
        raise SystemExit("devpi server: --primary-url needs --replica-secret-file (the primary's secret)")
    if getattr(args, "workers", 1) > 1:
        raise SystemExit("devpi server: a replica runs as one process; --workers cannot be combined with "
                         "--primary-url yet")
    return Replica(url, secret, getattr(args, "replica_max_lag", DEFAULT_MAX_LAG),
                   getattr(args, "replica_start_wait", BOOTSTRAP_BUDGET), getattr(args, "replica_write_wait", None))
