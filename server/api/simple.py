"""Simple pages: /<user>/<index>/+simple/ and /<user>/<index>/+simple/<project>/.

A hit is a dictionary lookup: pages are cached as rendered bytes per (index,
project, format, link prefix) with their ETag, and commits drop the entries
they affect. Links are relative to the request path, so the same bytes work
behind a proxy that adds a path prefix.
"""
from __future__ import annotations

import hashlib

import bottle

from ..core import Core
from ..packaging.names import normalize_name
from ..repos.repository import ProjectView
from ..repos.simple_formats import choose_format
from ..repos.simple_page_cache import CachedPage, page_answer
from ..repos.simple_render import (
    iter_list_html,
    iter_list_json,
    render_project_html,
    render_project_json,
)
from ..runtime.malloc_tuning import trim
from ..runtime.metrics import PAGE_CACHE
from ..store.catalog import IndexRow
from .httpkit import APIError, base_url, require_index
from .meta import INDEX_SEG, USER_SEG
from .read_guard import reader_hides

_HIT, _MISS = PAGE_CACHE.labels("hit"), PAGE_CACHE.labels("miss")

STALE_HEADERS = {"Cache-Control": "max-age=0, must-revalidate, no-cache, no-store", "Pragma": "no-cache",
                 "Expires": "0", "X-Devpi-Stale": "upstream unreachable, serving the last good copy"}


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def _respond(page: CachedPage, ctype: str) -> bottle.HTTPResponse:
    req = bottle.request
    status, headers, body = page_answer(page, ctype, req.get_header("Accept-Encoding"),
                                        req.get_header("If-None-Match"), req.method == "HEAD")
    return bottle.HTTPResponse(body, status=int(status[:3]), headers=dict(headers))


def _link_prefix(path: str) -> str:
    return "../" * (path.count("/") - 1)


def page_key(user: str, index: str, project: str, fmt: str, prefix: str, hidden: tuple[str, ...]) -> tuple:
    """A page's cache key. A reader who may read every member of the index's resolution order
    gets the plain key (one entry for all of them: the fast path's); one who may not has the
    members left out appended, so readers with the same view share its pages."""
    key = (user, index, project, fmt, prefix)
    return key + (hidden,) if hidden else key


def serve_project_page(core: Core, user: str, index: str, project: str) -> bottle.HTTPResponse:
    req = bottle.request
    fmt, ctype = choose_format(req.get_header("Accept"), req.query.get("format"))
    ix = require_index(core, user, index)
    hidden = reader_hides(core, req, ix)
    key = page_key(user, index, project, fmt, _link_prefix(req.path), hidden)
    cached = core.page_cache.get(key)
    (_HIT if cached is not None else _MISS).inc()
    if cached is None:
        try:
            project.encode("ascii")
        except UnicodeEncodeError:
            raise APIError(400, "project names are ASCII") from None
        cached = core.page_cache.get_or_render(key, lambda: _render_project_page(core, ix, key, fmt, hidden))
    return _respond(cached, ctype)


def _render_project_page(core: Core, ix: IndexRow, key: tuple, fmt: str, hidden: tuple[str, ...]) -> CachedPage:
    project, prefix = key[2], key[4]
    generation = core.page_cache.generation
    static_ticket = core.static_ticket()
    view: ProjectView | None = core.repository(ix, hidden).get_project(project)
    if view is None:
        raise APIError(404, f"no project {project!r} on {ix.fullname}")
    if fmt == "json":
        body = render_project_json(view, prefix)
    else:
        body = render_project_html(view, prefix, ix.fullname)
    etag = _etag(body)
    extra: dict[str, str] = {}
    if view.last_serial is not None:
        extra["X-PyPI-Last-Serial"] = str(view.last_serial)
    if view.stale:  # answered, never cached: the next request asks upstream again
        extra.update(STALE_HEADERS)
        return CachedPage(body, etag, extra, None)
    if static_ticket is not None and not hidden and prefix == STATIC_PROJECT_PREFIX and core.static_pages_of(ix):
        # a mirror-backed page goes with a deadline (its cache life); where a mirror is in
        # the resolution order but the page has no cache life (a project held privately that
        # hides the mirror's, a plugin's index type) it is not kept: no deadline to trust
        if view.max_age is not None or not core.mirror_backed(ix):
            if not core.static.put_page(ix.user, ix.name, project, fmt, body, static_ticket, view.max_age) \
                    and core.static.behind(static_ticket):  # not kept: the next request renders and fills DIR
                return CachedPage(body, etag, extra, None)
    return core.page_cache.put(key, project, body, etag, extra, generation, view.max_age)


# the link prefix of /<user>/<index>/+simple/<project>/, the one URL of a page nginx serves
# from the static view (without the slash, nginx asks the server, which redirects)
STATIC_PROJECT_PREFIX = "../" * 4


def serve_project_list(core: Core, user: str, index: str) -> bottle.HTTPResponse:
    req = bottle.request
    fmt, ctype = choose_format(req.get_header("Accept"), req.query.get("format"))
    ix = require_index(core, user, index)
    hidden = reader_hides(core, req, ix)
    key = page_key(user, index, "", fmt, "", hidden)
    cached = core.page_cache.get(key)
    (_HIT if cached is not None else _MISS).inc()
    if cached is None:
        cached = core.page_cache.get_or_render(key, lambda: _render_project_list(core, ix, key, fmt, hidden))
    return _respond(cached, ctype)


def _render_project_list(core: Core, ix: IndexRow, key: tuple, fmt: str, hidden: tuple[str, ...]) -> CachedPage:
    generation = core.page_cache.generation
    static_ticket = core.static_ticket()
    repo = core.repository(ix, hidden)
    chunks = repo.project_name_chunks()
    if core.page_cache.generation != generation:  # the list just arrived (it drops the cached
        generation = core.page_cache.generation  # list): this render may be kept all the same
        chunks = repo.project_name_chunks()
    # rendered a slice at a time; a big list is kept as gzip only (CachedPage.from_pieces)
    pieces = iter_list_json(chunks) if fmt == "json" else iter_list_html(chunks, ix.fullname)
    if _list_incomplete(core, ix):  # a new mirror's list is still on its way: say so, keep nothing
        page = CachedPage.from_pieces(pieces, dict(INCOMPLETE_HEADERS))
    else:
        page = CachedPage.from_pieces(pieces, {})
        keep = True
        if static_ticket is not None and not hidden and key[4] == "" and core.static_pages_of(ix) \
                and not core.mirror_backed(ix):  # a mirror's list is replaced when it is, no deadline
            keep = core.static.put_page(ix.user, ix.name, "", fmt, b"".join(page.identity()), static_ticket) \
                or not core.static.behind(static_ticket)  # (see _render_project_page)
        if keep:
            page = core.page_cache.put_page(key, "", page, generation)
    if page.body is None:  # a big list: give its transient buffers back (see malloc_tuning)
        trim()
    return page


INCOMPLETE_HEADERS = {"Cache-Control": "max-age=0, must-revalidate, no-cache, no-store",
                      "X-Devpi-Incomplete": "upstream's project list is still loading: only the projects "
                                            "this server has seen so far are listed"}


def _list_incomplete(core: Core, ix: IndexRow) -> bool:
    """Whether a mirror in the index's resolution order has no complete project list yet."""
    for member in core.resolution_order(ix):
        if member.type == "mirror" and getattr(core.single_repository(member), "names_incomplete", False):
            return True
    return False


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request

    def project_page(user: str, index: str, project: str):
        norm = normalize_name(project)
        if norm != project:
            tail = "/" if req.path.endswith("/") else ""
            # absolute, from the outside URL: bottle would resolve a relative one against the
            # proxy-stripped path and drop a path prefix
            bottle.redirect(f"{base_url(core, req)}/{user}/{index}/+simple/{norm}{tail}", 302)
        return serve_project_page(core, user, index, project)

    def project_list(user: str, index: str):
        return serve_project_list(core, user, index)

    def refresh(user: str, index: str, project: str):
        ix = require_index(core, user, index)
        norm = normalize_name(project)
        for member in core.resolution_order(ix):
            if member.type == "mirror":
                repo = core.single_repository(member)
                forget = getattr(repo, "refresh", None)
                if forget:
                    forget(norm)
        core.page_cache.drop_project(norm)
        bottle.redirect(f"{base_url(core, req)}/{user}/{index}/+simple/{norm}/", 302)

    simple = f"/{USER_SEG}/{INDEX_SEG}/+simple"
    for method in ("GET", "HEAD"):
        app.route(simple + "/", method, project_list)
        app.route(simple, method, project_list)
        app.route(simple + "/<project>/", method, project_page)
        app.route(simple + "/<project>", method, project_page)
    app.route(simple + "/<project>/refresh", "POST", refresh)
    app.route(simple + "/<project>/refresh/", "POST", refresh)
