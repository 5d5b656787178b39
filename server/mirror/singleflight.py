"""Single-flight: concurrent callers asking for the same key share one call.

Twenty pip processes asking for one page (or one file) must cause one upstream
request, not twenty. The call runs in its own thread, so a caller may stop
waiting (``Future.result(timeout)``) while the call goes on and its result
still lands where the call puts it (the mirror's stored copy).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from ..runtime.metrics import SINGLEFLIGHT_WAITS


class SingleFlight:
    def __init__(self, name: str = "fetch"):
        self._name = name
        # counted by kind ("render", "mirror"), never by the name (it may name an index)
        self._waits = SINGLEFLIGHT_WAITS.labels(name.partition(":")[0])
        self._lock = threading.Lock()
        self._calls: dict[Hashable, Future] = {}

    def submit(self, key: Hashable, fn: Callable[[], Any]) -> Future:
        """The running call for key, or a new one running fn in a background thread."""
        with self._lock:
            fut = self._calls.get(key)
            if fut is not None:
                self._waits.inc()
                return fut
            fut = Future()
            fut.set_running_or_notify_cancel()
            self._calls[key] = fut

        def run() -> None:
            try:
                result = fn()
            except BaseException as e:  # handed to every waiter
                with self._lock:
                    self._calls.pop(key, None)
                fut.set_exception(e)
            else:
                with self._lock:
                    self._calls.pop(key, None)
                fut.set_result(result)

        threading.Thread(target=run, name=f"{self._name}:{key}", daemon=True).start()
        return fut

    def do(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        """Run fn in the calling thread, or wait for the caller already running it for key.

        For work the caller would wait for anyway (rendering a page, fetching a page
        nothing stored can stand in for): no extra thread, and a burst of misses for one
        key costs one call instead of one per request.
        """
        with self._lock:
            fut = self._calls.get(key)
            leader = fut is None
            if leader:
                fut = Future()
                fut.set_running_or_notify_cancel()
                self._calls[key] = fut
        if not leader:
            self._waits.inc()
            return fut.result()
        try:
            result = fn()
        except BaseException as e:
            with self._lock:
                self._calls.pop(key, None)
            fut.set_exception(e)
            raise
        with self._lock:
            self._calls.pop(key, None)
        fut.set_result(result)
        return result

    def running(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._calls
