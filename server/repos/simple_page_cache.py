"""Rendered simple pages kept as bytes, and how a cached page is answered.

A page is rendered once per (index, project, format, link prefix) and then
served from memory until a commit touches it (or, for pages built from
upstream data, until it expires). Large pages also keep a gzip copy, made
once on the first request that accepts it: a 2,000-file page shrinks
several-fold, and compressing per request would cost more than serving.

The cache is bounded by bytes (``--page-cache-size``): a page and its gzip copy
count; the oldest pages go once the budget is spent, and a page larger than the
whole budget is served but not kept. A hit reads no counters and takes no lock.
"""
from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable

from ..mirror.singleflight import SingleFlight

GZIP_MIN = 1400  # smaller pages fit a packet anyway
PAGE_OVERHEAD = 512  # bytes an entry costs besides its bodies (key, headers, objects)


class CachedPage:
    __slots__ = ("body", "etag", "extra", "expires", "_gz", "owner")

    def __init__(self, body: bytes, etag: str, extra: dict[str, str], expires: float | None):
        self.body = body
        self.etag = etag
        self.extra = extra
        self.expires = expires
        self._gz: bytes | None = None
        self.owner: PageCache | None = None  # the cache that counts this page's bytes

    def gzipped(self) -> bytes:
        if self._gz is None:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
            self._gz = c.compress(self.body) + c.flush()
            if self.owner is not None:
                self.owner._grew(self, len(self._gz))
        return self._gz

    @property
    def size(self) -> int:
        return len(self.body) + (len(self._gz) if self._gz is not None else 0) + PAGE_OVERHEAD


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

    def __init__(self, max_bytes: int = 64 << 20):
        self._pages: dict[tuple, CachedPage] = {}  # oldest first
        self._project_of: dict[tuple, str] = {}
        self._by_project: dict[str, set[tuple]] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self.max_bytes = max_bytes
        self.bytes = 0  # what the kept pages weigh (``CachedPage.size``)
        self.not_kept = 0  # pages served but too large to keep
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
            self._remove(key)
            if page.size > self.max_bytes:
                self.not_kept += 1
                return page
            page.owner = self
            self._pages[key] = page
            self._project_of[key] = project
            self._by_project.setdefault(project, set()).add(key)
            self.bytes += page.size
            self._evict()
        return page

    def _grew(self, page: CachedPage, added: int) -> None:
        """A kept page's gzip copy was made: count it (and make room for it)."""
        with self._lock:
            if page.owner is self:
                self.bytes += added
                self._evict()

    def _evict(self) -> None:
        """With the lock held: forget the oldest pages until the budget holds."""
        while self.bytes > self.max_bytes and self._pages:
            self._remove(next(iter(self._pages)))

    def _remove(self, key: tuple) -> None:
        page = self._pages.pop(key, None)
        if page is None:
            return
        self.bytes -= page.size
        page.owner = None
        project = self._project_of.pop(key)
        keys = self._by_project.get(project)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_project[project]

    def drop_project(self, project: str) -> None:
        with self._lock:
            self.generation += 1
            for key in list(self._by_project.get(project, ())):
                self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            for page in self._pages.values():
                page.owner = None
            self._pages.clear()
            self._project_of.clear()
            self._by_project.clear()
            self.bytes = 0

    def stats(self) -> dict[str, int]:
        return {"pages": len(self._pages), "bytes": self.bytes, "max_bytes": self.max_bytes,
                "not_kept": self.not_kept}
