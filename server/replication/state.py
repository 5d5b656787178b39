"""What a replica knows about how far behind it is, for /+status, /+health and the headers.

Lag in serials is the primary's last serial the replica heard of minus its own. Lag in
seconds is how long ago the replica last knew it held everything the primary had (a
response that ended with nothing left to send): it grows while the primary is cut off
as well as while the replica falls behind, which is what a load balancer asking
/+health wants to know. ``stale_since`` is the first failed contact after the last good
one; reads then carry ``X-Devpi-Replica-Stale-Since``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

STALE_HEADER = "X-Devpi-Replica-Stale-Since"
MAX_ERRORS = 20  # recent replication errors kept for /+status


class ReplicaState:
    def __init__(self, primary_url: str, max_lag: float):
        self.primary_url = primary_url
        self.max_lag = max_lag
        self.started = time.time()
        self.primary_serial: int | None = None
        self.in_sync_at: float | None = None  # last time the replica held all the primary had
        self.contacted_at: float | None = None
        self.stale_since: float | None = None
        self.last_error: str | None = None
        self.errors: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        # called (outside the lock) when the primary becomes unreachable (False) or reachable
        # again (True): a replica's mirror pages list other files then (mirror/through_primary.py)
        self.on_reachability: Callable[[bool], None] | None = None

    def heard(self, primary_serial: int | None) -> None:
        """The primary answered (and said its serial)."""
        with self._lock:
            self.contacted_at = time.time()
            was_stale, self.stale_since = self.stale_since is not None, None
            if primary_serial is not None:
                self.primary_serial = primary_serial
        if was_stale and self.on_reachability is not None:
            self.on_reachability(True)

    def caught_up(self, local_serial: int) -> None:
        with self._lock:
            self.in_sync_at = time.time()
            self.last_error = None
            if self.primary_serial is None or self.primary_serial < local_serial:
                self.primary_serial = local_serial

    def failed(self, message: str, *, unreachable: bool) -> None:
        with self._lock:
            now = time.time()
            turned_stale = unreachable and self.stale_since is None
            if turned_stale:
                self.stale_since = now
            self.last_error = message
            self.errors.append({"at": now, "message": message})
            del self.errors[:-MAX_ERRORS]
        if turned_stale and self.on_reachability is not None:
            self.on_reachability(False)

    def lag_seconds(self, local_serial: int) -> float:
        if self.in_sync_at is None:
            return time.time() - self.started
        behind = self.primary_serial is not None and self.primary_serial > local_serial
        if not behind and self.stale_since is None and self.last_error is None:
            return 0.0
        return time.time() - self.in_sync_at

    def headers(self) -> list[tuple[str, str]]:
        since = self.stale_since
        return [] if since is None else [(STALE_HEADER, formatdate(since, usegmt=True))]

    def status(self, local_serial: int) -> dict[str, Any]:
        with self._lock:
            primary = self.primary_serial
            return {
                "role": "replica", "primary_url": self.primary_url, "serial": local_serial,
                "primary_serial": primary,
                "lag_serials": max(0, primary - local_serial) if primary is not None else None,
                "lag_seconds": round(self.lag_seconds(local_serial), 3), "max_lag": self.max_lag,
                "primary_contacted_at": self.contacted_at, "in_sync_at": self.in_sync_at,
                "stale_since": self.stale_since, "last_error": self.last_error, "errors": list(self.errors),
            }
