"""``GET /+hello`` answers ``{"uploads": N}``: the files uploaded since the server started.

Two hooks: the upload event counts, the route answers. The event hook runs in the
server's event thread after each commit, the route in a request thread, so the count
is guarded by a lock.
"""
from __future__ import annotations

import threading

from devpi.server.hooks import hookimpl, json_response


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.uploads = 0

    def add(self) -> None:
        with self._lock:
            self.uploads += 1


counter = Counter()


@hookimpl
def devpiserver_on_upload(index: str, project: str, version: str, filename: str, rel: str) -> None:
    """Count release files (not doc zips or test results) added to any index."""
    if rel == "releasefile":
        counter.add()


@hookimpl
def devpiserver_add_routes(app):
    """``app`` is the server's bottle app; ``json_response`` makes the JSON answer."""

    def hello():
        return json_response({"uploads": counter.uploads})

    app.route("/+hello", "GET", hello)
