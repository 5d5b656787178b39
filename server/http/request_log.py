"""One line per request in the server log, written in batches (runtime/batched_log.py).

Its own module, free of the application's imports: the start-up lane
(http/startup_lane.py) logs its answers through it before the application exists.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ..runtime.batched_log import BatchedLines, shared_lines


class RequestLog:
    """One line per request: method, path, status, milliseconds (timestamp cached per second).

    ``observe(environ, status, seconds)``, when set, is told the same (the request metrics,
    http/request_metrics.py: measured here once rather than by another layer)."""

    def __init__(self, app: Callable, log: BatchedLines | None = None,
                 observe: Callable[[dict, str, float], None] | None = None):
        self.app = app
        self.log = log or shared_lines()
        self.observe = observe
        self._second = 0
        self._stamp = ""
        self.after_first: Callable[[], None] | None = None  # called once, after the first request

    def _timestamp(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        return self._stamp

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        t0 = time.perf_counter()
        status_holder: list[str] = []

        def start(status: str, headers: list, exc_info: Any = None) -> Callable:
            status_holder.append(status)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            seconds = time.perf_counter() - t0
            status = status_holder[0][:3] if status_holder else "-"
            self.log.add("{} {} {} {} {:.1f}ms\n".format(
                self._timestamp(), environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), status, seconds * 1000))
            if self.observe is not None:
                self.observe(environ, status, seconds)
            if self.after_first is not None:
                hook, self.after_first = self.after_first, None
                hook()
