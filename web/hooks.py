"""The web UI as a plugin of the server: it wraps the server's WSGI app as middleware that
answers browsers (web/middleware.py), registered like any third party's plugin would be
(server/hooks.py), so the server knows nothing of it."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devpi.server.hooks import hookimpl


@hookimpl
def devpiserver_wsgi_middleware(core: Any) -> Callable[[Callable], Callable]:
    from . import wrap

    return lambda app: wrap(app, core)
