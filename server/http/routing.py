"""bottle's router, with each method's combined route pattern compiled once, not per route.

bottle recompiles the combined regular expression of all of a method's routes
every time a route is added, so registering n routes compiles n growing
patterns: with the server's ~60 routes that was a good part of the work between
the imports and the first answer. :class:`OnceRouter` marks the method instead
and compiles its pattern once, at the first match after routes changed.
"""
from __future__ import annotations

import threading
from typing import Any

import bottle


class OnceRouter(bottle.Router):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stale: set[str] = set()
        self._stale_lock = threading.Lock()

    def _compile(self, method: str) -> None:
        self._stale.add(method)

    def match(self, environ: dict) -> Any:
        if self._stale:
            self._compile_stale()
        return super().match(environ)

    def _compile_stale(self) -> None:
        with self._stale_lock:
            for method in sorted(self._stale):
                super()._compile(method)
                self._stale.discard(method)


def new_app(**kwargs: Any) -> bottle.Bottle:
    """A ``bottle.Bottle`` with an :class:`OnceRouter` (before any route is added)."""
    app = bottle.Bottle(**kwargs)
    vars(app)["router"] = OnceRouter()  # bottle refuses to set an attribute twice
    return app
