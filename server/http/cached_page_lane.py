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
from ..runtime.metrics import PAGE_CACHE

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
        # the API's helpers (imported here, once: the app is built, no import cycle left;
        # PageKeys must not import them: the start-up lane uses it before the app exists)
        from ..api.httpkit import credentials_of
        from ..api.simple import page_key

        self._credentials_of = credentials_of
        self._page_key = page_key
        self._count_hit = PAGE_CACHE.labels("hit").inc  # misses: the view that renders counts them

    def hit(self, environ: dict, in_loop: bool = True) -> tuple[CachedPage, str] | None:
        """The cached page and content type this request asks for, if the cache holds it
        and its reader may read it (remembered in the environ: the server asks first, to
        answer it without a thread).

        Read access (acl_read): a page under the plain key is the view of a reader who may
        read every member of the index's resolution order. For an index whose members anyone
        may read (one flag, ``Core.chain_open``) that is every reader: served here. Any other
        needs the reader's identity, which may check a password: never in the event loop
        (``in_loop``), only in a worker thread (``_restricted``)."""
        asked = self.keys(environ)
        if asked is None:
            return None
        key, ctype = asked
        user, index = key[0], key[1]
        page = self.core.page_cache.get(key)
        if (page is not None or not in_loop) and not self.core.chain_open(f"{user}/{index}", load=False):
            page = self._in_loop(environ, user, index, key) if in_loop else \
                self._restricted(environ, user, index, key)
        if page is not None and servable(page, environ):
            found = environ["devpi.cached_page"] = (page, ctype)
            return found
        return None

    def _in_loop(self, environ: dict, user: str, index: str, key: tuple) -> CachedPage | None:
        """A restricted chain's page for a reader known without waiting (anonymous, or
        credentials ``Core.identity_at_once`` can tell), or None: then a worker thread
        decides (``_restricted`` or the application, which also answers refusals)."""
        core = self.core
        indexes = core._indexes
        ix = indexes.get(f"{user}/{index}") if indexes is not None else None
        if ix is None:
            return None
        creds = self._credentials_of(environ)
        if creds is None:
            return None  # anonymous (a refusal, or an unusual ACL) or malformed: the thread's job
        ident = core.identity_at_once(*creds)
        if ident is None:
            return None
        readable, hidden = core.read_view(ident, ix)
        if not readable or core.throttle.retry_after(creds[0], core.proxies.client_addr(environ)):
            return None
        return core.page_cache.get(self._page_key(*key, hidden))

    def _restricted(self, environ: dict, user: str, index: str, key: tuple) -> CachedPage | None:
        """The page this reader's view of a restricted chain caches, or None: then the full
        application answers (the page, or its 401/403)."""
        import bottle

        from ..api.httpkit import APIError, identity

        core = self.core
        ix = core.get_index(user, index)
        if ix is None:
            return None
        try:
            ident = identity(core, bottle.BaseRequest(environ))
        except APIError:  # throttled: the application says so
            return None
        readable, hidden = core.read_view(ident, ix)
        return core.page_cache.get(self._page_key(*key, hidden)) if readable else None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        found = environ.get("devpi.cached_page") or self.hit(environ, in_loop=False)
        if found is not None:
            self._count_hit()
            return serve(environ, start_response, found[0], found[1])
        return self.app(environ, start_response)
