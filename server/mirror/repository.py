"""Mirror indexes (``type: mirror``, e.g. ``root/pypi``): an on-demand cache of an upstream index.

A project page is fetched from upstream on first request (PEP 691 JSON
preferred, HTML understood), kept in memory and in SQL, served from there
until ``mirror_cache_expiry`` and then revalidated with a conditional request.
Files are fetched on first request, streamed to clients while they are
stored, and kept only when their sha256 matches the upstream page
(``mirror.fetch.FileFetch``). Concurrent requests for one page or file share
one upstream request (``singleflight``).

Upstream trouble never takes the index down: a slow answer is replaced by the
stored copy (the fetch finishes in the background), a failed one by the last
good copy marked stale, and only a project never seen before fails (502,
naming the upstream). With ``--offline`` nothing is asked of upstream and
pages list only files that are cached.

The cache is not part of the serial/changelog: it is upstream's data, not a
change made here, so its writes take no serial.
"""
from __future__ import annotations

import json
import logging
import posixpath
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import bottle

from .. import __version__
from ..api.httpkit import APIError, error_reply
from ..core import Core
from ..packaging.names import is_project_name, normalize_name
from ..repos.namelists import text_chunks
from ..repos.repository import Link, ProjectView
from ..runtime.bounded_dict import BoundedDict
from ..runtime.malloc_tuning import trim
from ..store.catalog import IndexRow
from ..store.flight_locks import HeldLock
from . import through_primary
from .fetch import FetchFailed, FileFetch, LeaderBody
from .page import (
    ACCEPT,
    NeedsParser,
    PageError,
    ProjectListReader,
    UpstreamLink,
    parse_project_list,
    parse_project_page,
    project_of_filename,
    redact,
    relpath_for,
    to_link,
)
from .policy import DestinationRefused, policy_of
from .singleflight import SingleFlight
from .store import MirrorStore
from .upstream_health import UpstreamHealth

if TYPE_CHECKING:
    from .through_primary import MirrorSource
    from .upstream_client import UpstreamClient

log = logging.getLogger("devpi.server.mirror")
DEFAULT_EXPIRY = 1800.0
RETRY_AFTER_FAILURE = 30.0  # seconds a failing upstream is left alone (per page) before asking again
NOT_FOUND_TTL = 60.0  # seconds an upstream 404 is remembered
OLDER_SERIAL_RECHECK = 60.0  # an upstream answer older than ours: keep ours, ask again after this
LIST_MIN_EXPIRY = 3600.0  # the project list is big and changes nothing for installers: refresh rarely
# What a mirror keeps in memory (all of it is in SQL too, or can be asked again): upstream
# pages up to ``--mirror-memory`` bytes (estimated, see ``_weight``: a link with its rendering
# costs about 1.5 KB), stored files, unknown names.
MEMORY_FILES = 100_000
MEMORY_MISSING = 10_000
# What an upstream answer may be, read whole into memory: a project page (the largest real
# ones are a few MB) and the list of all projects (tens of MB on a big index).
# A project page also has at most MAX_PAGE_LINKS links (the largest real ones have tens of
# thousands; each costs about 1.5 KB in memory once parsed).
MAX_PAGE_BYTES = 64 * 1024 * 1024
MAX_PAGE_LINKS = 200_000
MAX_LIST_BYTES = 128 * 1024 * 1024
LIST_PIECE = 256 * 1024  # bytes of the project list read at a time
LIST_FIRST_WAIT = 15.0  # seconds a request waits for a new mirror's first complete project list


# (upstream URL, sha256, filename, project, md5, declared size): see MirrorRepository._target
Target = tuple[str, str | None, str, str, str | None, int | None]


class UpstreamError(Exception):
    """Upstream could not give a usable answer; the message names the upstream URL. ``status``:
    what a request that has no stored copy gets (502; 503 when a replica's primary is unreachable)."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


@dataclass
class Page:
    name: str
    url: str
    raw: list[UpstreamLink]
    etag: str | None
    last_modified: str | None
    serial: int | None
    fetched: float
    fresh_until: float  # wall time until which the page is served without asking upstream
    links: list[Link] = field(default_factory=list)
    by_relpath: dict[str, UpstreamLink] = field(default_factory=dict)
    retry_after: float = 0.0  # monotonic time before which a failed upstream is not asked again
    weight: int = 0  # estimated bytes in memory
    gone_upstream: bool = False  # upstream said 404/410: only the files cached here are served


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    filename: str
    size: int
    created: float


class MirrorRepository:
    """The Repository (see repos/repository.py) of one mirror index, plus file serving and refresh."""

    is_mirror = True

    def __init__(self, core: Core, ix: IndexRow):
        self.core = core
        self.index = ix
        self.fullname = ix.fullname
        # without a mirror_url (created so, as the original allows) a mirror asks nothing of
        # anyone until one is set; root/pypi of old server dirs takes the server's default
        given = ix.config.get("mirror_url") or (core.mirror_url_default() if ix.fullname == "root/pypi" else "")
        self.configured = bool(given)
        url = str(given)
        self.url = url if url.endswith("/") or not url else url + "/"
        self.expiry = float(ix.config.get("mirror_cache_expiry", DEFAULT_EXPIRY))
        self.ignore_serial = bool(ix.config.get("mirror_ignore_serial_header"))
        self.policy = policy_of(core)  # where this mirror may connect, which file links it follows
        rt = core.config.request_timeout
        self.timeout = (rt, max(30.0, 6 * rt))  # (connect, read) for every upstream request
        self._lock = threading.Lock()
        self._pages: BoundedDict[str, Page] = BoundedDict(core.config.mirror_memory)  # weighed by bytes
        # project -> monotonic time until which upstream's 404 holds
        self._missing: BoundedDict[str, float] = BoundedDict(MEMORY_MISSING)
        self._files: BoundedDict[str, StoredFile] = BoundedDict(MEMORY_FILES)
        self._downloads: dict[str, FileFetch] = {}
        self._flights = SingleFlight(f"mirror:{self.fullname}")
        self._health = UpstreamHealth(RETRY_AFTER_FAILURE)
        self.store = MirrorStore(core.storage, ix.id)
        self._client: UpstreamClient | None = None
        # upstream's project names, sorted, one per line, zlib-compressed (see _pack)
        self._names_packed: bytes | None = None
        self._pages_not_kept = 0
        self._pages_loaded = 0  # pages read back from SQL (see _page)
        self._names_loaded = False
        self._names_fresh_until = 0.0
        # on a replica: where missing pages and files come from instead of the upstream
        # (through_primary.py); None on a primary
        self.source: MirrorSource | None = core.mirror_source

    @property
    def offline(self) -> bool:
        """Nothing can be fetched: ``--offline``, a mirror without a mirror_url yet, or a
        replica whose primary is unreachable (pages then list only the files it holds, as
        with ``--offline``)."""
        return self.core.config.offline or not self.configured or (
            self.source is not None and not self.source.reachable())

    # -- upstream HTTP ---------------------------------------------------------------------
    def client(self) -> UpstreamClient:
        """One client per mirror (keep-alive connections), made when first needed (the
        warm-up makes it soon after start, outside the time to the first answer)."""
        if self.source is not None:  # a replica asks its primary, never the upstream
            raise UpstreamError(f"{self.fullname} fetches through the primary, not from upstream")
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from .upstream_client import UpstreamClient

                    self._client = UpstreamClient(f"devpi-server/{__version__} (mirror of {redact(self.url)})",
                                                  maxsize=max(10, self.core.config.threads),
                                                  local_root=local_tree_root(self.url),
                                                  guard=self.policy.check, via=self.core.via_mark)
        return self._client

    def _get(self, url: str, headers: dict[str, str], max_bytes: int = MAX_PAGE_BYTES, stream: bool = False) -> Any:
        """With ``stream`` the body is left to the caller (who closes the answer)."""
        t0 = time.perf_counter()
        shown = redact(url)
        try:  # the whole body here, so a broken, endless or huge one counts as a failure
            resp = self.client().get(url, headers, timeout=self.timeout, max_seconds=2 * self.timeout[1],
                                     max_bytes=max_bytes, stream=stream)
        except Exception as e:
            log.warning("upstream GET %s failed after %.0fms: %s", shown, (time.perf_counter() - t0) * 1000, e)
            from .upstream_client import BodyTooLong

            if isinstance(e, BodyTooLong):  # it was reached: say what was wrong with the answer
                raise UpstreamError(f"upstream {e}") from None
            if isinstance(e, DestinationRefused):  # not upstream's health: the mirror policy's word
                raise UpstreamError(f"upstream {shown} refused: {e}") from None
            self._health.failed()
            raise UpstreamError(f"upstream {shown} could not be reached: {type(e).__name__}") from None
        self._health.answered()
        size = resp.headers.get("Content-Length", "?") if stream else len(resp.content)
        log.info("upstream GET %s %s %s bytes serial=%s %.0fms", shown, resp.status_code, size,
                 resp.headers.get("X-PyPI-Last-Serial", "-"), (time.perf_counter() - t0) * 1000)
        return resp

    # -- pages: memory, then SQL, then upstream -----------------------------------------------
    def _make_page(self, name: str, url: str, raw: list[UpstreamLink], etag: str | None,
                   last_modified: str | None, serial: int | None, fetched: float) -> Page:
        page = Page(name, url, raw, etag, last_modified, serial, fetched,
                    fresh_until=fetched + self.expiry if url == self.page_url(name) else 0.0)
        seen: set[str] = set()
        owner, allowed = self.index.user, self.policy.file_link_allowed
        text = 0
        for link in raw:
            text += len(link["url"]) + len(link["filename"])
            if link["filename"] in seen or not allowed(owner, self.url, link["url"]):
                continue
            seen.add(link["filename"])
            page.by_relpath[relpath_for(link)] = link
            page.links.append(to_link(link, self.fullname))
        # measured with tracemalloc on real-shaped pages: ~760 bytes of objects per link plus
        # its URL and name held about four times over (dict, Link, relpath, rendering)
        page.weight = 1024 + 760 * len(raw) + 4 * text
        return page

    def upstream_state(self) -> str | None:
        """"slow" or "down" while requests do not wait for upstream (upstream_health.py), else
        None: for GET /+health, which reports it without failing on it."""
        return self._health.unwell()

    def page_url(self, name: str) -> str:
        return f"{self.url}{name}/"

    def _page(self, name: str, look: bool = False) -> Page | None:
        """The page in memory, else its stored copy. ``look``: ask SQL even when this process
        never stored the name (another process sharing the database may have)."""
        page = self._pages.get(name)
        if page is not None:
            return page
        if not (look or self.offline or self.store.may_have_page(name)):
            return None
        # A page heavier than --mirror-memory is never kept, so every request that needs it
        # reads and parses it again (tens of MB for a big page): concurrent ones share one.
        return self._flights.do(("stored", name), lambda: self._load_page(name))

    def _load_page(self, name: str) -> Page | None:
        """The stored copy of a page, parsed (run single-flight by ``_page``)."""
        page = self._pages.get(name)  # kept by the call that just ended
        if page is not None:
            return page
        row = self.store.load_page(name)
        if row is None:
            return None
        with self._lock:
            self._pages_loaded += 1
        page = self._make_page(name, row.url, json.loads(row.links), row.etag, row.last_modified, row.serial,
                               row.fetched)
        return self._pages.setdefault(name, page, _weight(page))

    def _forget_page(self, name: str) -> None:
        self._pages.pop(name, None)
        self.store.delete_page(name)

    def _view(self, page: Page, stale: bool = False, max_age: float | None = None) -> ProjectView:
        links = page.links
        if self.offline:
            cached = self.store.cached_relpaths(page.name)
            links = [link for link in links if link.path.split("/", 2)[2] in cached]
            max_age = 60.0
        elif max_age is None:
            max_age = max(0.0, page.fresh_until - time.time())
        notes = ([f"{self.fullname}'s upstream no longer has {page.name}: only the files cached here are "
                  "served"] if page.gone_upstream else [])
        return ProjectView(page.name, list(links), stale=stale, last_serial=page.serial, max_age=max_age,
                           notes=notes)

    def get_project(self, name: str) -> ProjectView | None:
        if not is_project_name(name):  # "a#b" or "a?b" would ask upstream for another page
            return None
        name = normalize_name(name)
        page = self._page(name)
        if page is not None and (self.offline or time.time() < page.fresh_until):
            return self._view(page)
        if self.offline:
            return None
        now = time.monotonic()
        if page is None and self._missing.get(name, 0.0) > now:
            return None
        if page is not None and page.retry_after > now:
            return self._view(page, stale=True)
        unwell = self._health.unwell() if page is not None else None
        if unwell is not None:  # another request just learned that upstream hangs or fails
            return self._view(page, stale=unwell == "down", max_age=0.0)  # type: ignore[arg-type]
        key, fetch = ("page", name), lambda: self._fetch_page_across(name)
        try:
            if page is None:  # nothing to answer with meanwhile: this request fetches itself
                result = self._flights.do(key, fetch)
            else:  # a stored copy answers if upstream is slow; the fetch goes on in the background
                result = self._flights.submit(key, fetch).result(timeout=self.core.config.request_timeout)
        except FutureTimeout:
            log.info("upstream slow for %s: answering from the stored copy, refreshing in the background",
                     name)
            self._health.slow()
            return self._view(page, max_age=0.0)  # type: ignore[arg-type]
        except UpstreamError as e:
            page = self._pages.get(name, page) or self._page(name, look=True)
            if page is not None:
                return self._view(page, stale=True)
            raise APIError(e.status, f"{self.fullname}: {e}") from None
        return None if result is None else self._view(result)

    def _flight_key(self, kind: str, name: str) -> str:
        return f"{kind}:{self.index.id}:{name}"

    def _fetch_page_across(self, name: str) -> Page | None:
        """``_fetch_page`` once across processes (store/flight_locks.py): under the page's
        lock, a copy that another process stored while this one waited is used instead of
        asking upstream again. The row is committed before the lock is let go."""
        started = time.time()
        # a page is waited for as long as a request waits for upstream; then fetched here too
        held = self.core.flight_locks.acquire(self._flight_key("page", name), self.core.config.request_timeout)
        try:
            if held is not None and held.waited:
                row = self.store.load_page(name)
                if row is not None and row.url == self.page_url(name) and (
                        row.fetched >= started or time.time() < row.fetched + self.expiry):
                    self._pages.pop(name, None)
                    page = self._load_page(name)
                    if page is not None:
                        self._missing.pop(name, None)
                        self.core.page_cache.drop_project(name)
                        held.release()
                        return page
        except BaseException:
            if held is not None:
                held.release()
            raise
        try:
            return self._fetch_page(name)
        finally:
            if held is not None:  # once the row waiters read next is committed; not waited for here
                self.store.after_commit(held.release)

    def _fetch_page(self, name: str) -> Page | None:
        """One upstream round trip for a page (run single-flight); updates memory and SQL."""
        if self.source is not None:
            return through_primary.fetch_page(self, name)
        page = self._page(name)
        url = self.page_url(name)
        headers = {"Accept": ACCEPT}
        if page is not None and page.url == url:
            if page.etag:
                headers["If-None-Match"] = page.etag
            if page.last_modified:
                headers["If-Modified-Since"] = page.last_modified
        try:
            resp = self._get(url, headers)
            conditional = "If-None-Match" in headers or "If-Modified-Since" in headers
            if resp.status_code == 304 and page is not None and conditional:  # else: a broken answer
                page.fetched = time.time()
                page.fresh_until = page.fetched + self.expiry
                page.retry_after = 0.0
                page.etag = resp.headers.get("ETag") or page.etag
                page.last_modified = resp.headers.get("Last-Modified") or page.last_modified
                self.store.touch_page(name, page.fetched, page.etag, page.last_modified)
                return page
            if resp.status_code in (404, 410):
                kept = self._keep_cached(page, url, resp.status_code) if page is not None else None
                if kept is not None:
                    return kept
                self._missing.put(name, time.monotonic() + min(self.expiry, NOT_FOUND_TTL))
                if page is not None:
                    self._forget_page(name)
                    self.core.page_cache.drop_project(name)
                return None
            if resp.status_code != 200:
                raise UpstreamError(f"upstream {redact(url)} answered {resp.status_code}")
            serial = _int_or_none(resp.headers.get("X-PyPI-Last-Serial"))
            if (page is not None and page.serial is not None and serial is not None and serial < page.serial
                    and not self.ignore_serial):
                log.warning("upstream answer for %s has serial %s, older than the stored %s: ignored",
                            url, serial, page.serial)
                page.fresh_until = time.time() + min(self.expiry, OLDER_SERIAL_RECHECK)
                page.retry_after = 0.0
                return page
            links = _links_at_most(resp.content)
            if links > MAX_PAGE_LINKS:  # counted before parsing: a parsed link costs ~1 KB
                raise UpstreamError(f"upstream {redact(url)} sent a page of about {links} links, more than the "
                                    f"{MAX_PAGE_LINKS} a page may have")
            try:  # an empty 200 (no body, no type) is an empty project, as the original reads it
                raw = parse_project_page(resp.content, resp.headers.get("Content-Type"), resp.url) \
                    if resp.content.strip() else []
            except (PageError, ValueError) as e:
                raise UpstreamError(f"upstream {redact(url)} sent an unusable page ({e})") from None
            if len(raw) > MAX_PAGE_LINKS:
                raise UpstreamError(f"upstream {redact(url)} sent a page of {len(raw)} links, more than the "
                                    f"{MAX_PAGE_LINKS} a page may have")
        except UpstreamError:
            if page is not None:
                page.retry_after = time.monotonic() + min(RETRY_AFTER_FAILURE, self.expiry)
            raise
        new = self._make_page(name, url, raw, resp.headers.get("ETag"), resp.headers.get("Last-Modified"),
                              serial, time.time())
        with self._lock:
            self._pages.put(name, new, _weight(new))
            kept = name in self._pages
            was_missing = self._missing.pop(name, None) is not None
        if page is not None or was_missing:  # pages rendered from the old state must go
            self.core.page_cache.drop_project(name)
        self.store.save_page(name, url, raw, new.etag, new.last_modified, serial, new.fetched)
        if not kept:  # larger than the mirror's memory: the next request reads it from SQL
            self._pages_not_kept += 1
            log.info("mirror %s: page %s (%d links, ~%d bytes) is larger than --mirror-memory: served, "
                     "not kept in memory", self.fullname, name, len(raw), new.weight)
            self.store.flush()
        return new

    def _keep_cached(self, page: Page, url: str, status: int) -> Page | None:
        """Upstream deleted a project this mirror holds files of: keep serving those (a
        deletion upstream must not break the builds that pinned them), and only those; the
        page is asked again at its usual expiry. None when nothing of it is cached."""
        cached = self.store.cached_relpaths(page.name)
        raw = [link for relpath, link in page.by_relpath.items() if relpath in cached]
        if not raw:
            return None
        new = self._make_page(page.name, url, raw, None, None, page.serial, time.time())
        new.gone_upstream = True
        if not page.gone_upstream:
            log.warning("mirror %s: upstream answered %d for %s: serving the %d file(s) cached here",
                        self.fullname, status, page.name, len(raw))
        with self._lock:
            self._pages.put(page.name, new, _weight(new))
        self.core.page_cache.drop_project(page.name)
        self.store.save_page(page.name, url, raw, None, None, page.serial, new.fetched)
        return new

    def refresh(self, name: str) -> None:
        """Forget freshness (and remembered failures) so the next request revalidates."""
        name = normalize_name(name)
        page = self._page(name)
        if page is not None:
            page.fresh_until = 0.0
            page.retry_after = 0.0
        self._missing.pop(name, None)
        self._health.answered()  # asked for by hand: this request waits for upstream again
        self.core.page_cache.drop_project(name)

    def has_project(self, name: str) -> bool:
        try:
            return self.get_project(name) is not None
        except APIError:
            return self._page(normalize_name(name), look=True) is not None

    # -- the project list ----------------------------------------------------------------------
    def project_names(self) -> list[str]:
        """Upstream's project list. Held as one compressed newline-joined string (see
        ``parse_project_list`` and ``_pack``); a list is made only for the caller at hand.

        Before a first complete copy exists (a new mirror), a request waits up to
        ``LIST_FIRST_WAIT`` for it; if it is still not there, the answer is the names this
        mirror has seen so far and ``names_incomplete`` says so (the page is then marked
        and not cached). A partial list is never stored or served as the complete one."""
        text = self._upstream_names()
        if text is None:
            return self._cached_names()
        return text.split("\n") if text else []

    def project_name_chunks(self) -> Iterator[list[str]]:
        text = self._upstream_names()
        return iter([self._cached_names()]) if text is None else text_chunks(text)

    def _upstream_names(self) -> str | None:
        """Upstream's complete list (newline-joined), or None when there is none (yet)."""
        if self.offline or self.index.config.get("mirror_no_project_list"):
            return None
        if not self._names_loaded:
            self._load_names()
        if self.source is not None:  # the primary's list, as the cache sync brought it
            return None if self._names_packed is None else zlib.decompress(self._names_packed).decode()
        packed = self._names_packed
        if packed is None or time.time() >= self._names_fresh_until:
            future = self._flights.submit(("list",), self._fetch_names)
            if packed is None:
                try:
                    return future.result(timeout=max(self.core.config.request_timeout, LIST_FIRST_WAIT))
                except Exception:
                    return None
        return zlib.decompress(packed).decode()

    @property
    def names_incomplete(self) -> bool:
        """True while the project list served is only what this mirror has seen (see
        ``project_names``)."""
        return (self._names_packed is None and not self.offline
                and not self.index.config.get("mirror_no_project_list"))

    def _load_names(self) -> None:
        row = self.store.load_list()
        if row is not None and self._names_packed is None:
            stored = row.names
            if stored.startswith("["):  # written before issue 24: a JSON list
                stored = "\n".join(json.loads(stored))
            self._names_packed = _pack(stored)
            self._names_fresh_until = row.fetched + max(self.expiry, LIST_MIN_EXPIRY)
        self._names_loaded = True

    def _fetch_names(self) -> str:
        try:
            text, etag, serial = self._read_list()
        except (UpstreamError, PageError) as e:
            log.warning("mirror %s: project list not refreshed: %s", self.fullname, e)
            self._names_fresh_until = time.time() + RETRY_AFTER_FAILURE
            raise
        now = time.time()
        self._names_packed = _pack(text)
        self._names_fresh_until = now + max(self.expiry, LIST_MIN_EXPIRY)
        self.core.page_cache.drop_project("")
        self.store.save_list(text, etag, serial, now)
        trim()  # the list's transient buffers (see malloc_tuning)
        return text

    def _read_list(self) -> tuple[str, str | None, int | None]:
        """Upstream's list (text, ETag, serial), parsed as it arrives (``ProjectListReader``):
        the body of a big index (tens of MB) is never held whole. Markup that needs a real
        parser (rare) is read again whole, within the same bounds."""
        import http.client  # here: the server's start imports no HTTP client (see client())

        resp = self._get(self.url, {"Accept": ACCEPT}, max_bytes=MAX_LIST_BYTES, stream=True)
        try:
            if resp.status_code != 200:
                raise UpstreamError(f"upstream {redact(self.url)} answered {resp.status_code}")
            etag, serial = resp.headers.get("ETag"), _int_or_none(resp.headers.get("X-PyPI-Last-Serial"))
            reader = ProjectListReader(resp.headers.get("Content-Type"))
            deadline = time.monotonic() + 2 * self.timeout[1]
            size = 0
            try:
                for data in resp.iter_content(LIST_PIECE, partial=True):
                    size += len(data)
                    if size > MAX_LIST_BYTES or time.monotonic() > deadline:
                        what = (f"more than {MAX_LIST_BYTES} bytes" if size > MAX_LIST_BYTES
                                else f"not complete after {2 * self.timeout[1]:.0f}s")
                        raise UpstreamError(f"upstream answer from {redact(self.url)} {what}")
                    reader.feed(data)
                return reader.finish(), etag, serial
            except NeedsParser:
                pass
            except (OSError, http.client.HTTPException) as e:
                self._health.failed()
                raise UpstreamError(f"upstream {redact(self.url)} broke off the project list: "
                                    f"{type(e).__name__}") from None
        finally:
            resp.close()
        resp = self._get(self.url, {"Accept": ACCEPT}, max_bytes=MAX_LIST_BYTES)
        if resp.status_code != 200:
            raise UpstreamError(f"upstream {redact(self.url)} answered {resp.status_code}")
        text = parse_project_list(resp.content, resp.headers.get("Content-Type"), resp.url)
        return text, resp.headers.get("ETag"), _int_or_none(resp.headers.get("X-PyPI-Last-Serial"))

    def _cached_names(self) -> list[str]:
        return sorted(self.store.page_names() | set(self._pages))

    def memory_stats(self) -> dict[str, int]:
        return {"pages": len(self._pages), "bytes": self._pages.weight, "max_bytes": self._pages.budget,
                "pages_not_kept": self._pages_not_kept, "pages_loaded": self._pages_loaded,
                "project_list_bytes": len(self._names_packed or b"")}

    # -- files -----------------------------------------------------------------------------
    def _stored(self, relpath: str) -> StoredFile | None:
        stored = self._files.get(relpath)
        if stored is not None:
            return stored
        row = self.store.load_file(relpath)
        if row is None or not self.core.blobs.exists(row.sha256):
            return None
        stored = StoredFile(row.sha256, row.filename, row.size, row.created)
        with self._lock:
            return self._files.setdefault(relpath, stored)

    def _remember_file(self, relpath: str, sha256: str, filename: str, size: int) -> StoredFile:
        """Remember a verified file (its blob is committed already) in memory; the caller
        holds ``_lock``, so a request never finds neither the download nor the file. The
        caller then queues its row (``_save_file``) after letting go of the lock."""
        return self._files.put(relpath, StoredFile(sha256, filename, size, time.time()))

    def _save_file(self, relpath: str, project: str, url: str, stored: StoredFile) -> None:
        self.store.save_file(relpath, project, stored.filename, stored.sha256, stored.size, stored.created, url)

    def _target(self, relpath: str, fetch_page: bool = True) -> Target | None:
        """(upstream URL, expected sha256, filename, project, expected md5 when upstream gives
        no sha256, the size the page declares) of a file path, from its page.

        Without ``fetch_page`` only pages already in memory are asked (no I/O)."""
        is_meta = relpath.endswith(".metadata")
        base = relpath[: -len(".metadata")] if is_meta else relpath
        filename = base.rsplit("/", 1)[-1]
        project = project_of_filename(filename)
        link: UpstreamLink | None = None
        page = (self._page(project) if fetch_page else self._pages.get(project)) if project else None
        if page is not None:
            link = page.by_relpath.get(base)
        if link is None and project and fetch_page:
            try:
                self.get_project(project)  # fetches the page if it is missing or expired
            except APIError:
                pass
            page = self._page(project)  # from SQL if it is too large to keep in memory
            link = page.by_relpath.get(base) if page else None
        if link is None and fetch_page:
            for other in list(self._pages.values()):  # a file whose name does not say its project
                if base in other.by_relpath:
                    link, project = other.by_relpath[base], other.name
                    break
        if link is None or project is None:
            return None
        if is_meta:
            if not link.get("core_metadata"):
                return None
            return (link["url"] + ".metadata", link.get("core_metadata_sha256"), filename + ".metadata", project,
                    None, None)
        size = link.get("size")
        return link["url"], link.get("sha256"), filename, project, link.get("md5"), size if size else None

    def serve_file(self, relpath: str, request: bottle.BaseRequest) -> bottle.HTTPResponse:
        from ..api.files import BlobMissing, serve_blob

        stored = self._files.get(relpath)
        target = None
        if stored is None and relpath not in self._downloads:
            # A file named by a page in memory whose bytes are not in the blob store cannot be
            # stored: skip the SQL lookup (every file of a cold install takes this path).
            target = None if self.offline else self._target(relpath, fetch_page=False)
            if target is None or not target[1] or self.core.blobs.exists(target[1]):
                stored = self._stored(relpath)
        if stored is None:
            stored = self._not_held(relpath)
        if stored is None:
            target = target or self._target(relpath)
            if target is None:
                raise APIError(404, f"no such file: {self.fullname}/{relpath}")
            lead = request.method == "GET" and not request.get_header("Range")
            fetch_or_stored = self._download_across(relpath, target, lead)
            if isinstance(fetch_or_stored, tuple):
                return self._stream_response(*fetch_or_stored, request)
            stored = fetch_or_stored
        self.core.disk.access.touch(self.index.id, relpath)  # a dict write (store/disk_stats.py)
        try:
            return serve_blob(self.core, stored.sha256, stored.filename, stored.size, stored.created)
        except BlobMissing:
            # evicted, collected or quarantined since this process remembered the file (by
            # another process, ``devpi gc`` or ``devpi fsck --repair``): download it again
            if self.offline or not self.forget_file(relpath, stored):
                raise
            return self.serve_file(relpath, request)

    def _not_held(self, relpath: str) -> StoredFile | None:
        """A file this mirror does not hold: refused when nothing may be fetched (503 on a
        replica cut off from its primary, which may have it), fetched through the primary on
        a replica, else None: the caller downloads it from upstream."""
        if self.offline:
            if self.source is not None:
                raise APIError(503, f"{self.fullname}/{relpath} is not on this replica yet and its primary "
                                    "cannot be reached: try again later", {"Retry-After": "30"})
            raise APIError(404, f"{self.fullname}/{relpath} is not cached and the server is offline")
        if self.source is not None:
            return through_primary.fetch_file(self, relpath)
        return None

    def forget_file(self, relpath: str, stored: StoredFile | None = None) -> bool:
        """Forget the remembered file at ``relpath`` (only if it is ``stored``, when given):
        its row or blob is gone, and the next request downloads it again."""
        with self._lock:
            known = self._files.get(relpath)
            if known is None or (stored is not None and known != stored):
                return stored is not None and known is None  # forgotten by another request already
            self._files.pop(relpath, None)
            return True

    def stored_file(self, relpath: str, timeout: float) -> StoredFile:
        """The file at ``relpath``, its blob stored and checked, downloaded now if need be and
        waited for (a push from this mirror copies rows that name blobs). Raises APIError."""
        stored = self._stored(relpath) or self._not_held(relpath)
        if stored is not None:
            return stored
        target = self._target(relpath)
        if target is None:
            raise APIError(404, f"no such file: {self.fullname}/{relpath}")
        got = self._download(relpath, *target, lead=False)
        if isinstance(got, StoredFile):
            return got
        fetch = got[0]
        try:
            fetch.wait_committed(timeout)
        except FetchFailed as e:
            raise APIError(e.status, e.message) from None
        assert fetch.sha256 is not None
        self.core.blobs.sync_dir(fetch.sha256)  # the rename is durable before rows name the blob
        return StoredFile(fetch.sha256, fetch.filename, fetch.written, time.time())

    def _download_across(self, relpath: str, target: Target,
                         lead: bool) -> tuple[FileFetch, LeaderBody | None] | StoredFile:
        """``_download`` once across processes (store/flight_locks.py): a download under
        way here is joined as before; else this process takes the file's lock (for as long
        as its download runs) and, if another process held it first, serves the file that
        one stored instead of downloading it again."""
        if relpath in self._downloads:
            return self._download(relpath, *target, lead=lead)
        held = self.core.flight_locks.acquire(self._flight_key("file", relpath), self.timeout[1],
                                              abandon=lambda: relpath in self._downloads)
        if held is not None and held.waited:
            stored = self._stored(relpath)
            if stored is not None:
                held.release()
                return stored
        return self._download(relpath, *target, lead=lead, held=held)

    def _download(self, relpath: str, url: str, expected: str | None, filename: str, project: str,
                  md5: str | None, size: int | None, lead: bool,
                  held: HeldLock | None = None) -> tuple[FileFetch, LeaderBody | None] | StoredFile:
        """The stored file, or the download in progress (started here if there is none) and,
        with ``lead`` when this call started it, the body through which the caller (a GET
        request for the whole file) drives it.

        Under ``_lock``, in this order: a download that has just renamed its blob but not yet
        recorded it is found as a download, so its file is recorded once.

        A blob the store already holds under the page's sha256 is never taken up in place of
        a download: it may be another index's bytes (an upload deleted since, a file of a
        private stage), and a page naming its hash must not make this mirror hand them out.
        A mirror serves only bytes its own upstream sent it and that it recorded in its own
        row; the verified download then lands on the same blob (storage is shared, access
        is per index)."""
        created = False
        stored, fetch = self._files.get(relpath), self._downloads.get(relpath)  # the usual answers
        if stored is None and fetch is None:
            with self._lock:  # again, now for certain
                stored = self._files.get(relpath)
                fetch = None if stored is not None else self._downloads.get(relpath)
                if stored is None and fetch is None:
                    fetch = self._new_fetch(relpath, url, expected, filename, project, md5, size, held)
                    self._downloads[relpath] = fetch
                    created = True  # the download lets go of ``held`` when it ends
        if held is not None and not created:  # not this call's download after all
            held.release()
        if stored is not None:
            return stored
        assert fetch is not None
        if not created:
            return fetch, None
        if lead:
            return fetch, fetch.lead()
        return fetch.start(), None

    def _new_fetch(self, relpath: str, url: str, expected: str | None, filename: str,
                   project: str, md5: str | None = None, size: int | None = None,
                   held: HeldLock | None = None) -> FileFetch:
        def verified(f: FileFetch) -> None:
            assert f.sha256 is not None
            with self._lock:
                stored = self._remember_file(relpath, f.sha256, filename, f.written)
            self._save_file(relpath, project, url, stored)
            corrupt = self.core.config.extra.get("corrupt_blobs")
            if corrupt:  # a bad copy was quarantined (devpi fsck --repair) and this one checked
                corrupt.discard(f.sha256)

        def done(f: FileFetch) -> None:
            with self._lock:
                if self._downloads.get(relpath) is f:
                    del self._downloads[relpath]
            if held is not None:  # once the row other processes look for is committed
                self.store.after_commit(held.release)

        return FileFetch(self.core.blobs, url, filename, expected,
                         lambda u, **kw: self.client().get(u, {"Accept-Encoding": "identity"}, **kw),
                         self.timeout, verified, done, expected_md5=md5, declared_size=size,
                         max_bytes=self.core.config.mirror_max_file_size,
                         max_seconds=self.core.config.mirror_download_timeout)

    def _stream_response(self, fetch: FileFetch, lead: LeaderBody | None,
                         request: bottle.BaseRequest) -> bottle.HTTPResponse:
        from ..api.files import IMMUTABLE, download_headers, serve_verified_file

        try:
            fetch.wait_headers(self.timeout[1])
            whole_first = fetch.content_length is None and request.method == "GET"
            if whole_first and lead is not None:
                lead.close()  # the transfer goes on in the background; this client waits below
            if (request.method == "GET" and request.get_header("Range")) or whole_first:
                # installers read a wheel's metadata with ranges: answer them from the whole file.
                # A file of unknown length too: without a Content-Length a cut stream could look
                # complete to a client (HTTP/1.0, a proxy), so it gets only checked bytes.
                f = fetch.open_verified(self.timeout[1])
                assert fetch.sha256 is not None
                return serve_verified_file(f, fetch.sha256, fetch.filename, fetch.written, time.time())
        except FetchFailed as e:
            raise APIError(e.status, e.message) from None
        headers = {**download_headers(fetch.filename), "Cache-Control": IMMUTABLE,
                   "Accept-Ranges": "bytes", "X-Accel-Buffering": "no"}
        if fetch.content_length is not None:
            headers["Content-Length"] = str(fetch.content_length)
        if fetch.last_modified:
            headers["Last-Modified"] = fetch.last_modified
        if fetch.expected:
            headers["ETag"] = f'"{fetch.expected}"'
        if request.method == "HEAD":
            return bottle.HTTPResponse(b"", status=200, headers=headers)

        def body():
            sent = False
            chunks = lead if lead is not None else fetch.stream()
            try:
                for chunk in chunks:
                    sent = True
                    yield chunk
            except FetchFailed as e:
                if not sent:  # nothing went out yet: a proper error reply instead (bottle takes it)
                    raise error_reply(e.status, e.message) from None
                raise  # cuts the connection: the client never gets the complete wrong file
            finally:
                if lead is not None:
                    lead.close()  # finishes the transfer if this client went away early

        return bottle.HTTPResponse(body(), status=200, headers=headers)


def local_tree_root(mirror_url: str) -> str | None:
    """For a mirror of a local tree (``file:///srv/pypi/simple/``): the directory its pages
    and files may come from, the one holding ``simple/`` (``/srv/pypi``). None otherwise."""
    if not mirror_url.startswith("file:"):
        return None
    return posixpath.dirname(posixpath.normpath(unquote(urlsplit(mirror_url).path)))


def _weight(page: Page) -> int:
    return page.weight


def _links_at_most(body: bytes) -> int:
    """An upper bound of the links a page can have (JSON "filename" keys or HTML anchors),
    counted without parsing it."""
    return max(body.count(b'"filename"'), body.count(b"<a") + body.count(b"<A"))


def _pack(names: str) -> bytes:
    """A project list as it is kept between uses: compressed, a quarter of its text (3 MB
    for 700,000 names). It is walked only to render a list page (then cached) and costs
    a few tens of milliseconds to unpack there."""
    return zlib.compress(names.encode(), 1)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def warm_up(core: Core) -> None:
    """Soon after the server answers: make each mirror's HTTP client, read which pages it keeps and
    make spare temp files for downloads, so the first cold requests do not each wait for
    that work."""
    try:
        core.blobs.keep_spares()  # the blob directories are made at start (main.py)
        if core.storage.is_sqlite:  # PostgreSQL connections are a shared, limited resource
            core.storage.warm_pool(min(16, core.config.threads))
        for ix in list(core.indexes().values()):
            if ix.type == "mirror" and core.mirror_source is None:
                repo = core.single_repository(ix)
                if not repo.configured:  # type: ignore[attr-defined]
                    continue  # no mirror_url yet: no upstream to connect to
                repo.client()  # type: ignore[attr-defined]
                repo.store.may_have_page("")  # type: ignore[attr-defined]
    except Exception:  # only a head start: the first request does the same work if this fails
        log.debug("mirror warm-up failed", exc_info=True)

