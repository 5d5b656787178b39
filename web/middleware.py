"""Who gets HTML: the dispatch in front of the server's JSON/simple API app.

A request is for the web part when it is a GET/HEAD from a browser (Accept
prefers text/html over any JSON type, and the User-Agent is not an
installer) and matches a page route; static assets and search are always
ours. Everything else goes to the wrapped app unchanged, so curl and
devpi-client get JSON on the very same URLs. A browser that hits an API
error gets the error's message as an HTML page.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import bottle
from devpi.server.api.httpkit import INSTALLER_UA

log = logging.getLogger("devpi.web")
ALWAYS_OURS = ("/+static/", "/+search")


def accept_quality(accept: str) -> tuple[float, float]:
    """(best q of an explicit HTML type, best q of any JSON type) in an Accept header."""
    html = jsonq = 0.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        mtype = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if mtype in ("text/html", "application/xhtml+xml"):
            html = max(html, q)
        elif "json" in mtype:
            jsonq = max(jsonq, q)
    return html, jsonq


def is_browser(environ: dict) -> bool:
    if INSTALLER_UA.match(environ.get("HTTP_USER_AGENT", "")):
        return False
    html, jsonq = accept_quality(environ.get("HTTP_ACCEPT", ""))
    return html > 0 and html > jsonq


class WebMiddleware:
    """The search index and the page routes are made after the server's first answer (a
    background task of the core) or by the first request that needs them, whichever comes
    first: neither is needed for the API, and both would delay its first answer."""

    def __init__(self, app: Callable, core: Any):
        self.app = app
        self.core = core
        self.search: Any = None  # the SearchIndex, once prepared
        self._web: bottle.Bottle | None = None
        self._failed = False  # the pages could not be built: the API is served alone
        self._web_lock = threading.Lock()
        core.after_start("web", self.prepare)

    def prepare(self) -> bottle.Bottle | None:
        """Start the search index and build the page routes, once; None if that failed."""
        with self._web_lock:
            if self._web is None and not self._failed:
                from .search import SearchIndex
                from .views import build_web_app

                try:
                    search = SearchIndex(self.core)
                    search.start()
                    web = build_web_app(self.core, search)
                except Exception:
                    log.exception("devpi.web failed to load; serving without HTML pages")
                    self._failed = True
                    return None
                self.search, self._web = search, web
            return self._web

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method in ("GET", "HEAD"):
            path = environ.get("PATH_INFO", "")
            ours = path.startswith(ALWAYS_OURS) or "/+doc/" in path or path.endswith("/+doc")
            if ours or is_browser(environ):
                web = self._web if self._web is not None else self.prepare()
                if web is None:
                    return self.app(environ, start_response)
                if ours:
                    return web(environ, start_response)
                try:
                    web.router.match(environ)
                except bottle.HTTPError:
                    return self._html_errors(environ, start_response)
                return web(environ, start_response)
        return self.app(environ, start_response)

    def _html_errors(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Pass through, but turn a JSON error for a browser into an HTML page."""
        held: dict[str, Any] = {}

        def start(status: str, headers: list, exc_info: Any = None) -> Callable:
            ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
            if int(status[:3]) >= 400 and ctype.startswith("application/json"):
                held.update(status=status, headers=headers)
                return lambda _data: None
            return start_response(status, headers, exc_info)

        body = self.app(environ, start)
        if not held:
            return body
        try:
            raw = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close:
                close()
        try:
            message = str(json.loads(raw).get("message") or held["status"])
        except (ValueError, AttributeError):
            message = held["status"]
        from .views import error_page

        html = error_page(self.core, environ, int(held["status"][:3]), message)
        headers = [(k, v) for k, v in held["headers"] if k.lower() not in ("content-type", "content-length")]
        headers += [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(html)))]
        from .views import SECURITY_HEADERS

        headers += [h for h in SECURITY_HEADERS.items()]
        start_response(held["status"], headers)
        return [html] if environ.get("REQUEST_METHOD") != "HEAD" else [b""]
