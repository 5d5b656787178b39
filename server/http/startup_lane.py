"""The server's first answers, while the rest of it is still being put together.

Most of a start is importing and assembling the application (the SQL layer alone is
about two thirds). ``devpi server`` therefore listens first and assembles the
application in a thread; meanwhile

- :class:`StartupLane` answers, in the event loop, the simple pages the last run kept
  (repos/page_snapshot.py), while the database's serial and uuid (read per answer with
  the standard library: store/serial_peek.py) still equal the snapshot's stamp, and only
  to requests without credentials (the snapshot holds public indexes only);
- :class:`StartingApp` holds every other request until the application is ready, then
  hands it over (or answers 503 if the start failed or took longer than ``timeout``).

Once the application is ready the server swaps both out (``WsgiBridge.attach``) and
closes the lane: from then on the page cache answers as always.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ..api.errors import JSON_CT, json_body, reason_phrase
from ..repos.page_snapshot import PageSnapshot
from ..repos.simple_page_cache import CachedPage, PageCache
from ..store.serial_peek import SerialPeek
from .cached_page_lane import PageKeys, servable, serve

START_WAIT = 600.0  # seconds a request waits for the application (a long migration)
CREDENTIALS = ("HTTP_AUTHORIZATION", "HTTP_X_DEVPI_AUTH", "HTTP_COOKIE")


class StartupLane:
    def __init__(self, snapshot: PageSnapshot, peek: SerialPeek):
        self.snapshot = snapshot
        self.peek = peek
        self.keys = PageKeys()
        self.closed = False
        self.answered = 0

    def hit(self, environ: dict) -> tuple[CachedPage, str] | None:
        """The kept page this request asks for, if it may be answered from the snapshot now."""
        if self.closed or any(name in environ for name in CREDENTIALS):
            return None
        asked = self.keys(environ)
        if asked is None:
            return None
        page = self.snapshot.get(asked[0])
        if page is None or not servable(page, environ):
            return None
        if self.peek.read() != (self.snapshot.serial, self.snapshot.uuid):
            self.close()  # the database moved on (or cannot be read): the snapshot is done
            return None
        found = environ["devpi.cached_page"] = (page, asked[1])
        return found

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        found = environ.get("devpi.cached_page") or self.hit(environ)
        if found is None:  # not reached through the bridge, which asks hit() first
            return _unavailable(start_response, "the server is starting; try again shortly")
        self.answered += 1
        return serve(environ, start_response, found[0], found[1], self.snapshot.headers)

    def hand_over(self, page_cache: PageCache, serial: int, uuid: str) -> int:
        """Put the snapshot's pages into the assembled application's page cache, if the
        application is at the snapshot's serial (so they are answered warm, and the next
        snapshot keeps them); return how many. The cache's generation check drops them all
        should a commit land meanwhile."""
        generation = page_cache.generation
        if (serial, uuid) != (self.snapshot.serial, self.snapshot.uuid):
            return 0
        for key, page in self.snapshot.pages.items():
            page_cache.put_page(key, key[2], page, generation)
        return len(self.snapshot.pages)

    def close(self) -> None:
        self.closed = True
        self.peek.close()


class StartingApp:
    """The WSGI application until the real one is ready: requests wait for it."""

    def __init__(self, timeout: float = START_WAIT):
        self.timeout = timeout
        self._ready = threading.Event()
        self._app: Callable | None = None
        self._failure = ""
        self.on_wait: Callable[[], None] | None = None  # told when a request starts waiting

    def ready(self, app: Callable) -> None:
        self._app = app
        self._ready.set()

    def failed(self, message: str) -> None:
        self._failure = message
        self._ready.set()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if self.on_wait is not None and not self._ready.is_set():
            self.on_wait()
        if not self._ready.wait(self.timeout):
            return _unavailable(start_response, "the server is still starting; try again shortly")
        if self._app is None:
            return _unavailable(start_response, f"the server failed to start: {self._failure}")
        return self._app(environ, start_response)


def _unavailable(start_response: Callable, message: str) -> list[bytes]:
    body = json_body({"message": message})
    start_response(f"503 {reason_phrase(message)}", [("Content-Type", JSON_CT), ("Content-Length", str(len(body))),
                                                     ("Retry-After", "1")])
    return [body]
