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

import hashlib
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator

from ..mirror.singleflight import SingleFlight

GZIP_MIN = 1400  # smaller pages fit a packet anyway
COMPACT_MIN = 1 << 20  # a page rendered in pieces and larger than this is kept as gzip only
IDENTITY_PIECE = 256 * 1024  # bytes of a compact page decompressed at a time for a client without gzip
PAGE_OVERHEAD = 512  # bytes an entry costs besides its bodies (key, headers, objects)


class CachedPage:
    """A rendered page. A *compact* page (``from_pieces``, for the project list of a big
    mirror: tens of MB) keeps only its gzip copy, a fraction of the size: pip and uv
    accept gzip, and a client that does not gets it decompressed as it is sent, a piece at
    a time, never whole (``body`` is None, ``length`` its size)."""

    __slots__ = ("body", "etag", "extra", "expires", "_gz", "owner", "length")

    def __init__(self, body: bytes, etag: str, extra: dict[str, str], expires: float | None):
        self.body: bytes | None = body
        self.etag = etag
        self.extra = extra
        self.expires = expires
        self._gz: bytes | None = None
        self.owner: PageCache | None = None  # the cache that counts this page's bytes
        self.length = len(body)

    @classmethod
    def from_pieces(cls, pieces: Iterable[bytes], extra: dict[str, str], expires: float | None = None,
                    compact_min: int = COMPACT_MIN) -> CachedPage:
        """The page made of ``pieces``; once they pass ``compact_min`` bytes the rest is
        compressed as it comes, so neither the page nor its pieces are ever held whole."""
        digest = hashlib.sha256()
        held: list[bytes] = []
        length = 0
        gz: list[bytes] | None = None
        comp = None
        for piece in pieces:
            digest.update(piece)
            length += len(piece)
            if gz is not None:
                gz.append(comp.compress(piece))
                continue
            held.append(piece)
            if length > compact_min:
                comp = zlib.compressobj(6, zlib.DEFLATED, 31)
                gz = [comp.compress(b"".join(held))]
                held = []
        etag = '"' + digest.hexdigest()[:40] + '"'
        if gz is None:
            return cls(b"".join(held), etag, extra, expires)
        gz.append(comp.flush())
        page = cls(b"", etag, extra, expires)
        page.body, page._gz, page.length = None, b"".join(gz), length
        return page

    def gzipped(self) -> bytes:
        if self._gz is None:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
            self._gz = c.compress(self.body) + c.flush()
            if self.owner is not None:
                self.owner._grew(self, len(self._gz))
        return self._gz

    def identity(self) -> Iterator[bytes]:
        """The body uncompressed, in pieces (a compact page is decompressed as it goes)."""
        if self.body is not None:
            yield self.body
            return
        d = zlib.decompressobj(31)
        data = self._gz
        while data:
            yield d.decompress(data, IDENTITY_PIECE)
            data = d.unconsumed_tail
        tail = d.flush()
        if tail:
            yield tail

    @property
    def size(self) -> int:
        return len(self.body or b"") + (len(self._gz) if self._gz is not None else 0) + PAGE_OVERHEAD


def accepts_gzip(accept_encoding: str | None) -> bool:
    return bool(accept_encoding) and "gzip" in accept_encoding and "gzip;q=0" not in accept_encoding.replace(" ", "")


def page_answer(page: CachedPage, ctype: str, accept_encoding: str | None, if_none_match: str | None,
                head: bool) -> tuple[str, list[tuple[str, str]], bytes | Iterator[bytes]]:
    """(status, headers, body) for a cached page; the gzip copy has its own ETag. The body
    is bytes, or pieces for a compact page sent to a client without gzip (see CachedPage)."""
    body, etag = page.body, page.etag
    gz = page.length >= GZIP_MIN and accepts_gzip(accept_encoding)
    if gz:
        body, etag = page.gzipped(), etag[:-1] + '-gz"'
    headers = [("ETag", etag), ("Vary", "Accept, Accept-Encoding"), ("Cache-Control", "max-age=0, must-revalidate")]
    headers.extend(page.extra.items())
    if if_none_match and etag in if_none_match:
        return "304 Not Modified", headers, b""
    headers.append(("Content-Type", ctype))
    if gz:
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(body) if body is not None else page.length)))
    if head:
        return "200 OK", headers, b""
    return "200 OK", headers, body if body is not None else page.identity()


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
        self.on_keep: Callable[[], None] | None = None  # told when a page is kept (the start-up snapshot)

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
        return self.put_page(key, project, page, generation)

    def put_page(self, key: tuple, project: str, page: CachedPage, generation: int) -> CachedPage:
        """Keep ``page`` (made while the cache was at ``generation``) unless a commit came since."""
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
        if self.on_keep is not None:
            self.on_keep()
        return page

    def items(self) -> list[tuple[tuple, CachedPage]]:
        """The kept pages, oldest first (a copy: the cache goes on changing)."""
        with self._lock:
            return list(self._pages.items())

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
