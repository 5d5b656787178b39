"""devpi.web: the server's HTML face (pages, search, hosted docs, test results).

A plugin of the server: ``devpi.server.app`` calls :func:`wrap` if this package
imports, and serves the JSON/simple API alone otherwise. The server never
imports anything from here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def wrap(wsgi_app: Callable, core: Any) -> Callable:
    """Return a WSGI app answering browsers and passing everything else to wsgi_app."""
    from .middleware import WebMiddleware

    return WebMiddleware(wsgi_app, core)


__all__ = ["wrap"]
