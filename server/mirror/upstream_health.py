"""Whether an upstream is worth waiting for right now.

A request for an expired page that has a stored copy waits up to the request
timeout for upstream before it answers from the copy. When upstream hangs or
cannot be reached (a dead network behind a laptop, a firewall that drops
packets), every such request would pay that wait, one after the other: a pip run
over 25 expired pages would take 25 timeouts. So once one request has learned
that upstream is slow or failing, the others answer from their stored copies at
once, without asking upstream, until upstream answers again or the back-off has
passed (then the next request asks, and pays the wait once more if it must).

Requests for pages with no stored copy still ask: nothing could answer them
otherwise.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

Unwell = Literal["slow", "down"]


class UpstreamHealth:
    """What the last upstream requests of one mirror said. Plain attribute writes: two
    threads racing here at worst make one more request wait, or one less."""

    def __init__(self, backoff: float, clock: Callable[[], float] = time.monotonic):
        self._backoff = backoff
        self._clock = clock
        self._until = 0.0
        self._state: Unwell | None = None

    def slow(self) -> None:
        """A request stopped waiting for upstream; the fetch it started goes on."""
        if self._state != "down":
            self._state = "slow"
        self._until = max(self._until, self._clock() + self._backoff)

    def failed(self) -> None:
        """Upstream could not be reached, or did not answer in time."""
        self._state = "down"
        self._until = self._clock() + self._backoff

    def answered(self) -> None:
        """Upstream answered (whatever it said): waiting for it pays again."""
        self._state = None
        self._until = 0.0

    def unwell(self) -> Unwell | None:
        """Either "slow" or "down" while requests should not wait for upstream, else None."""
        if self._state is not None and self._clock() < self._until:
            return self._state
        return None
