"""Rendered simple pages kept as bytes, and how a cached page is answered.

A page is rendered once per (index, project, format, link prefix) and then
served from memory until a commit touches it (or, for pages built from
upstream data, until it expires). Large pages also keep a gzip copy, made
once on the first request that accepts it: a 2,000-file page shrinks
several-fold, and compressing per request would cost more than serving.
"""
from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable

from .singleflight import SingleFlight

GZIP_MIN = 1400  # smaller pages fit a packet anyway


class CachedPage:
    __slots__ = ("body", "etag", "extra", "expires", "_gz")

    def __init__(self, body: bytes, etag: str, extra: dict[str, str], expires: float | None):
        self.body = body
        self.etag = etag
        self.extra = extra
        self.expires = expires
        self._gz: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gz is None:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
            self._gz = c.compress(self.body) + c.flush()
        return self._gz


def accepts_gzip(accept_encoding: str | None) -> bool:
    return bool(accept_encoding) and "gzip" in accept_encoding and "gzip;q=0" not in accept_encoding.replace(" ", "")


def page_answer(page: CachedPage, ctype: str, accept_encoding: str | None, if_none_match: str | None,
                head: bool) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status, headers, body) for a cached page; the gzip copy has its own ETag."""
    body, etag = page.body, page.etag
    gz = len(body) >= GZIP_MIN and accepts_gzip(accept_encoding)
    if gz:
        body, etag = page.gzipped(), etag[:-1] + '-gz"'
    headers = [("ETag", etag), ("Vary", "Accept, Accept-Encoding"), ("Cache-Control", "max-age=0, must-revalidate")]
    headers.extend(page.extra.items())
    if if_none_match and etag in if_none_match:
        return "304 Not Modified", headers, b""
    headers.append(("Content-Type", ctype))
    if gz:
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(body))))
    return "200 OK", headers, b"" if head else body


class PageCache:
    """Rendered simple pages per (index, project, format, prefix).

    A write to project P anywhere drops P's pages on every index (inheritance
    makes any index a possible viewer); an index change drops everything. A
    page rendered while an invalidation happened is not stored (generation
    check), so a cache can never pin a state older than a commit it saw.
    """

    def __init__(self, max_entries: int = 50_000):
        self._pages: dict[tuple, CachedPage] = {}
        self._by_project: dict[str, set[tuple]] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self.max_entries = max_entries
        self.renders = SingleFlight("render")  # concurrent misses of one page render it once

    def get(self, key: tuple) -> CachedPage | None:
        page = self._pages.get(key)
        if page is None or (page.expires is not None and page.expires < time.monotonic()):
            return None
        return page

    def get_or_render(self, key: tuple, render: Callable[[], CachedPage]) -> CachedPage:
        """The cached page, or ``render()`` run once however many requests miss at the same time."""
        return self.get(key) or self.renders.do(key, render)

    def put(self, key: tuple, project: str, body: bytes, etag: str, extra: dict[str, str], generation: int,
            max_age: float | None = None) -> CachedPage:
        """max_age: for pages built from upstream data, which goes stale without any commit."""
        page = CachedPage(body, etag, extra, None if max_age is None else time.monotonic() + max_age)
        with self._lock:
            if generation != self.generation:
                return page
            if len(self._pages) >= self.max_entries:
                self._pages.clear()
                self._by_project.clear()
            self._pages[key] = page
            self._by_project.setdefault(project, set()).add(key)
        return page

    def drop_project(self, project: str) -> None:
        with self._lock:
            self.generation += 1
            for key in self._by_project.pop(project, ()):
                self._pages.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._pages.clear()
            self._by_project.clear()
