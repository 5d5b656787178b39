"""Answer cached simple-page hits before any routing happens.

Installers fetch the same simple pages over and over; once a page is rendered
its bytes sit in the page cache, so a hit needs no SQL, no rendering and no
framework: match the path, pick the format, look up the bytes. Anything else
(a miss, a redirect, an error, another URL) goes to the full application,
which renders and fills the cache.

The matching (:class:`PageKeys`) is shared with the start-up lane
(http/startup_lane.py), which answers from the pages kept across a restart.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..repos.simple_formats import choose_format
from ..repos.simple_page_cache import CachedPage, accepts_gzip, page_answer

if TYPE_CHECKING:
    from ..core import Core

_PAGE = re.compile(r"^/([^/+][^/]*)/([^/+][^/]*)/\+simple/(?:([^/]+)/)?$")
_MAX_ACCEPTS = 256


class PageKeys:
    """The page cache's key of a simple-page request: (user, index, project or "", format,
    link prefix), and the content type to answer with; None for any other request."""

    def __init__(self) -> None:
        self._formats: dict[tuple[str, str], tuple[str, str]] = {}

    def _format(self, accept: str, query: str) -> tuple[str, str] | None:
        key = (accept, query)
        got = self._formats.get(key)
        if got is None:
            fmt_param = None
            if query:
                if not query.startswith("format="):
                    return None
                fmt_param = query[7:]
            got = choose_format(accept, fmt_param)
            if len(self._formats) < _MAX_ACCEPTS:
                self._formats[key] = got
        return got

    def __call__(self, environ: dict) -> tuple[tuple, str] | None:
        method = environ["REQUEST_METHOD"]
        if method == "GET" or method == "HEAD":
            path = environ.get("PATH_INFO", "")
            m = _PAGE.match(path) if path[-1:] == "/" else None
            if m is not None:
                chosen = self._format(environ.get("HTTP_ACCEPT", ""), environ.get("QUERY_STRING", ""))
                if chosen is not None:
                    user, index, project = m.group(1), m.group(2), m.group(3)
                    if project:
                        return (user, index, project, chosen[0], "../" * (path.count("/") - 1)), chosen[1]
                    return (user, index, "", chosen[0], ""), chosen[1]
        return None


def servable(page: CachedPage, environ: dict) -> bool:
    """A compact page for a client without gzip is decompressed as it is sent: a streamed
    answer, the threaded path's job."""
    return page.body is not None or accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING"))


def serve(environ: dict, start_response: Callable, page: CachedPage, ctype: str,
          more_headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    status, headers, body = page_answer(page, ctype, environ.get("HTTP_ACCEPT_ENCODING"),
                                        environ.get("HTTP_IF_NONE_MATCH"), environ["REQUEST_METHOD"] == "HEAD")
    if more_headers:
        headers.extend(more_headers)
    start_response(status, headers)
    return [body] if isinstance(body, bytes) else body


class FastLane:
    def __init__(self, app: Callable, core: Core):
        self.app = app
        self.core = core
        self.keys = PageKeys()

    def hit(self, environ: dict) -> tuple[CachedPage, str] | None:
        """The cached page and content type this request asks for, if the cache holds it
        (remembered in the environ: the server asks first, to answer it without a thread)."""
        asked = self.keys(environ)
        if asked is not None:
            page = self.core.page_cache.get(asked[0])
            if page is not None and servable(page, environ):
                found = environ["devpi.cached_page"] = (page, asked[1])
                return found
        return None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        found = environ.get("devpi.cached_page") or self.hit(environ)
        if found is not None:
            return serve(environ, start_response, found[0], found[1])
        return self.app(environ, start_response)
