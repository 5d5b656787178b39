"""The pages: one handler per URL, each gathering data through the core and rendering a template.

Handlers read, never write. Errors raise ``APIError`` like the API views and
become HTML pages with the message here.
"""
from __future__ import annotations

import functools
import logging
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import bottle
from devpi.server.api.httpkit import APIError, base_url, credentials, here, identity, with_project
from devpi.server.http.routing import new_app
from devpi.server.packaging.names import normalize_name
from markupsafe import Markup

from . import model, render, toxresults
from .docs import DOC_CSP, DocZips, content_type
from .pagecache import PageMemo
from .search import SearchIndex

log = logging.getLogger("devpi.web")
STATIC = Path(__file__).parent / "static"
SEG = "[^+/][^/]*"
PROJECTS_PER_PAGE = 2500
HITS_PER_PAGE = 30
# What makes a browser ask for a name and password (and pip, uv, twine send theirs).
AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="devpi"'}
SECURITY_HEADERS = {
    # No inline script or style anywhere: user-supplied HTML cannot run even if it slipped through.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: https:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def safe_url(url: Any) -> str | None:
    """Only http(s) URLs become links; anything else (javascript:, data:) stays text."""
    url = str(url or "").strip()
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return url
    return None


def public_url(url: str) -> str:
    """A mirror URL without its embedded credentials."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def root_path(site: str) -> str:
    """Links in pages are server-root-relative paths: "" or the prefix of --outside-url."""
    return urlsplit(site).path.rstrip("/")


def html_response(body: str, status: int = 200, headers: dict[str, str] | None = None) -> bottle.HTTPResponse:
    data = body.encode()
    h = {"Content-Type": "text/html; charset=utf-8", "Vary": "Accept, User-Agent", **SECURITY_HEADERS,
         "Cache-Control": "no-cache", **(headers or {})}
    return bottle.HTTPResponse(data, status=status, headers=h)


def error_page(core: Any, environ: dict, status: int, message: str) -> bytes:
    req = bottle.BaseRequest(environ)
    title = {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
             410: "Gone"}.get(status, "Error")
    return render.render("error.html", root=root_path(base_url(core, req)), status=status, title=title,
                         message=message, crumbs=[], q="").encode()


def build_web_app(core: Any, search: SearchIndex) -> bottle.Bottle:
    app = new_app(catchall=True, autojson=False)
    req = bottle.request
    docs = DocZips(core)
    memo = PageMemo()
    core.change_listeners.append(memo.on_commit)

    def page(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except APIError as e:
                return html_response(error_page(core, req.environ, e.status, e.message).decode(), e.status,
                                     e.headers)
            except bottle.HTTPResponse:
                raise
            except Exception:
                log.exception("web page failed: %s", req.path)
                return html_response(error_page(core, req.environ, 500,
                                                "internal server error (see the server log)").decode(), 500)
        return wrapper

    def default_error(err: bottle.HTTPError) -> str:
        err.content_type = "text/html; charset=utf-8"
        for k, v in SECURITY_HEADERS.items():
            err.set_header(k, v)
        return error_page(core, req.environ, err.status_code, err.status_line).decode()

    app.default_error_handler = default_error

    def show(template: str, **context: Any) -> bottle.HTTPResponse:
        context.setdefault("q", "")
        context.setdefault("crumbs", [])
        site = base_url(core, req)
        return html_response(render.render(template, root=root_path(site), site=site, **context))

    def ident():
        return identity(core, req)

    def plugin_extras(hook_name: str, **kwargs: Any) -> list[Markup]:
        """HTML fragments plugins add at the end of a page (server/hooks.py), as they gave them."""
        plugins = getattr(core, "plugins", None)
        if plugins is None:
            return []
        return [Markup(html) for html in plugins.page_extras(hook_name, core=core, **kwargs)]

    def challenge(message: str) -> APIError:
        """401 with the Basic challenge; a wrong password is told so, and asked again."""
        if credentials(req) is not None:
            message = "authentication failed: wrong user name, password or token"
        return APIError(401, message, AUTH_CHALLENGE)

    def lookup(user: str, index: str) -> Any:
        """The index, if this visitor may read it (checked before any page or cached page of it).

        Anonymous: 401 with a Basic challenge, so the browser asks for a name and password
        and sends them with every later page (the web UI has no login form of its own);
        signed in without rights: 403. Neither says more than that the index exists,
        as the JSON API answers."""
        ix = core.get_index(user, index)
        if ix is None:
            raise APIError(404, f"The index {user}/{index} does not exist.")
        who = ident()
        if not model.may_read(core, who, ix):
            if who is None:
                raise challenge(f"authentication required to read {ix.fullname}")
            raise APIError(403, f"{who.user} may not read {ix.fullname}")
        return ix

    def readable_order(ix: Any) -> list[Any]:
        return model.readable_order(core, ident(), ix)

    def allowed_indexes() -> set[str]:
        who = ident()
        return {name for name, ix in core.indexes().items() if model.may_read(core, who, ix)}

    def unreadable() -> set[str]:
        """Indexes this visitor may not read: left out of listings, bases included."""
        return set(core.indexes()) - allowed_indexes()

    def index_crumbs(ix: Any) -> list[tuple[str, str]]:
        return [(ix.user, f"/{ix.user}"), (ix.name, f"/{ix.fullname}")]

    def project_or_404(ix: Any, project: str) -> model.ProjectInfo:
        info = model.load_project(core, ix, normalize_name(project), ident())
        if info is None:
            raise APIError(404, f"The project {project} does not exist on {ix.fullname}.")
        return info

    def maybe_normalize(project: str) -> None:
        norm = normalize_name(project)
        if norm != project:
            bottle.redirect(with_project(core, req, norm), 302)

    # -- pages ------------------------------------------------------------------------------
    @page
    def home():
        who = ident()
        counts = model.project_counts(core)
        indexes = [ix for ix in core.indexes().values() if model.may_read(core, who, ix)]
        users = []
        for u in model.list_users(core):
            own = [ix for ix in indexes if ix.user == u.name]
            users.append((u, own))
        return show("home.html", title="Indexes", users=users, counts=counts, hidden=unreadable())

    @page
    def user_page(user: str):
        u = model.get_user(core, user)
        if u is None:
            raise APIError(404, f"The user {user} does not exist.")
        who = ident()
        counts = model.project_counts(core)
        indexes = [ix for ix in core.indexes().values() if ix.user == user and model.may_read(core, who, ix)]
        return show("user.html", title=user, user=u, indexes=indexes, counts=counts, hidden=unreadable(),
                    crumbs=[(user, f"/{user}")])

    @page
    def index_page(user: str, index: str):
        ix = lookup(user, index)
        all_ix = core.indexes()
        order = [i.fullname for i in readable_order(ix)]
        # a base this visitor may not read is left out, as in the resolution order
        bases = [(b, b in all_ix) for b in ix.bases if b not in all_ix or b in order]
        if ix.type == "mirror":
            mirror_url = public_url(str(ix.config.get("mirror_url") or ""))
            return show("mirror.html", title=ix.fullname, ix=ix, mirror_url=mirror_url,
                        crumbs=index_crumbs(ix), disk=core.disk.per_index(core.storage).get(ix.id))
        try:
            pageno = max(1, int(req.query.get("page", "1")))
        except ValueError:
            pageno = 1
        site = base_url(core, req)
        key = (site, pageno, *order)  # the page shows the bases this visitor may read
        generation = memo.generation(ix.fullname)
        cached = memo.get(ix.fullname, key)
        if cached is not None:
            return html_response(cached)
        derived = search.index_projects(ix.fullname)
        if derived is not None:
            projects = [model.ProjectRow(name, display, version, model.clip(summary), updated)
                        for name, display, version, summary, updated in derived]
        else:  # search tables unavailable: read the catalog itself
            projects = model.index_projects(core, ix)
        pages = max(1, math.ceil(len(projects) / PROJECTS_PER_PAGE))
        pageno = min(pageno, pages)
        shown = projects[(pageno - 1) * PROJECTS_PER_PAGE: pageno * PROJECTS_PER_PAGE]
        uploads = model.latest_uploads(core, ix)
        body = render.render("index.html", root=root_path(site), site=site, q="", title=ix.fullname, ix=ix, bases=bases, order=order,
                             projects=shown, total=len(projects), pageno=pageno, pages=pages, uploads=uploads,
                             crumbs=index_crumbs(ix), disk=core.disk.per_index(core.storage).get(ix.id))
        memo.put(ix.fullname, key, generation, body)
        return html_response(body)

    @page
    def goto(user: str, index: str):
        ix = lookup(user, index)
        name = req.query.getunicode("name", "") or ""
        if not name.strip():
            bottle.redirect(f"{base_url(core, req)}/{ix.fullname}", 302)
        bottle.redirect(f"{base_url(core, req)}/{ix.fullname}/{quote(normalize_name(name.strip()))}", 302)

    @page
    def project_page(user: str, index: str, project: str):
        ix = lookup(user, index)
        maybe_normalize(project)
        info = project_or_404(ix, project)
        latest = info.latest
        used_by = search.used_by(info.name, allowed_indexes())
        return show("project.html", title=f"{info.display_name} · {ix.fullname}", ix=ix, info=info,
                    latest=latest, used_by=used_by,
                    extras=plugin_extras("devpiserver_web_project_extras", index=ix.fullname, project=info.name),
                    crumbs=[*index_crumbs(ix), (info.display_name, f"/{ix.fullname}/{info.name}")])

    @page
    def version_page(user: str, index: str, project: str, version: str):
        ix = lookup(user, index)
        maybe_normalize(project)
        info = project_or_404(ix, project)
        v = info.resolve_alias(version) if version in ("latest", "stable") and not info.get(version) \
            else info.get(version)
        if v is None:
            raise APIError(404, f"The version {version} of project {project} does not exist on {ix.fullname}.")
        md = v.metadata
        description = render.render_description(str(md.get("description") or ""),
                                                md.get("description_content_type"))
        reports = toxresults.load_reports(core, v) if v.toxresults else []
        from . import testruns

        runs = testruns.runs_for_version(core, ix, readable_order(ix), info.name, v.version, base_url(core, req))
        return show("version.html", title=f"{info.display_name} {v.version} · {ix.fullname}", ix=ix,
                    info=info, v=v, md=md, description=description, deps=dependencies(ix, md),
                    urls=project_urls(md), matrix=toxresults.matrix(reports), runs=runs,
                    extras=plugin_extras("devpiserver_web_version_extras", index=ix.fullname,
                                         project=info.name, version=v.version),
                    crumbs=[*index_crumbs(ix), (info.display_name, f"/{ix.fullname}/{info.name}"),
                            (v.version, f"/{ix.fullname}/{info.name}/{v.version}")])

    @page
    def testrun_page(user: str, index: str, project: str, version: str, run_id: int):
        from . import testruns

        ix = lookup(user, index)
        info = project_or_404(ix, project)
        v = info.get(version)
        run = testruns.run_detail(core, ix, readable_order(ix), info.name, version, run_id,
                                  base_url(core, req)) if v else None
        if run is None:
            raise APIError(404, f"No test run {run_id} for {project} {version} on {ix.fullname}.")
        return show("testrun.html", title=f"Test run {run.id} · {info.display_name} {version}", ix=ix,
                    info=info, v=v, run=run,
                    crumbs=[*index_crumbs(ix), (info.display_name, f"/{ix.fullname}/{info.name}"),
                            (v.version, f"/{ix.fullname}/{info.name}/{v.version}"), (f"run {run.id}", "")])

    @page
    def toxresult_page(user: str, index: str, project: str, version: str, basename: str):
        ix = lookup(user, index)
        info = project_or_404(ix, project)
        v = info.get(version)
        if v is None:
            raise APIError(404, f"The version {version} of project {project} does not exist on {ix.fullname}.")
        reports = toxresults.load_reports(core, v, only=basename)
        if not reports:
            raise APIError(404, f"No test results for {basename}.")
        return show("toxresults.html", title=f"Test results · {basename}", ix=ix, info=info, v=v,
                    basename=basename, reports=reports,
                    crumbs=[*index_crumbs(ix), (info.display_name, f"/{ix.fullname}/{info.name}"),
                            (v.version, f"/{ix.fullname}/{info.name}/{v.version}"),
                            ("test results", "")])

    @page
    def doc_page(user: str, index: str, project: str, version: str, path: str = ""):
        ix = lookup(user, index)
        info = project_or_404(ix, project)
        if version in ("latest", "stable") and not info.get(version):
            with_docs = [x for x in info.versions if x.doczip]
            candidates = [x for x in with_docs if not x.yanked] or with_docs
            if version == "stable":
                from packaging.version import InvalidVersion, Version

                def final(x: model.VersionInfo) -> bool:
                    try:
                        return not Version(x.version).is_prerelease
                    except InvalidVersion:
                        return False

                candidates = [x for x in candidates if final(x)] or candidates
            v = candidates[0] if candidates else None
        else:
            v = info.get(version)
        if v is None or v.doczip is None or not v.doczip.sha256:
            raise APIError(404, f"No documentation for {project} {version} on {ix.fullname}.")
        sha = v.doczip.sha256
        member, is_dir = docs.resolve(sha, path)
        if is_dir:
            bottle.redirect(here(core, req) + "/", 302)
        if member is None:
            raise APIError(404, f"{path or 'index.html'} is not in the documentation of {project} {v.version}.")
        etag = f'"{sha[:32]}-{zlib.crc32(member.encode()):08x}"'
        headers = {"ETag": etag, "Cache-Control": "max-age=60", "Content-Type": content_type(member),
                   "Content-Security-Policy": DOC_CSP, "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "same-origin"}
        if etag in (req.get_header("If-None-Match") or ""):
            return bottle.HTTPResponse(status=304, headers=headers)
        opened = docs.open_member(sha, member)
        if opened is None:
            raise APIError(404, f"{path or 'index.html'} in the documentation of {project} {v.version} "
                                "cannot be read (encrypted or in an unknown compression)")
        size, pieces = opened
        headers["Content-Length"] = str(size)
        if req.method == "HEAD":
            pieces.close()
            return bottle.HTTPResponse(status=200, headers=headers)
        return bottle.HTTPResponse(pieces, headers=headers)

    @page
    def signin():
        """The web UI has no login form: HTTP Basic is its sign-in. A challenge here, at the
        server's root, makes the browser send the name and password with every later page
        (browsers reuse credentials below the path that asked), so listings and search
        show the indexes this user may read. Closing the browser signs out."""
        who = ident()
        if who is None:
            raise challenge("sign in with your devpi user name and password (or a token)")
        bottle.redirect(f"{base_url(core, req)}/", 302)

    @page
    def doc_redirect(user: str, index: str, **_: Any):
        lookup(user, index)
        bottle.redirect(here(core, req) + "/", 302)

    @page
    def search_page():
        q = (req.query.getunicode("q", "") or "").strip()[:200]
        try:
            pageno = max(1, int(req.query.get("page", "1")))
        except ValueError:
            pageno = 1
        hits, total = ([], 0)
        if q:
            hits, total = search.search(q, allowed_indexes(), HITS_PER_PAGE, (pageno - 1) * HITS_PER_PAGE)
        pages = max(1, math.ceil(total / HITS_PER_PAGE))
        return show("search.html", title=f"Search: {q}" if q else "Search", q=q, hits=hits, total=total,
                    pageno=pageno, pages=pages, unavailable=search.failed,
                    crumbs=[("search", "/+search")])

    def static(filename: str):
        resp = bottle.static_file(filename, root=str(STATIC))
        if resp.status_code == 200:
            resp.set_header("Cache-Control", "max-age=86400")
        resp.set_header("X-Content-Type-Options", "nosniff")
        return resp

    # -- helpers for the version page ------------------------------------------------------
    def dependencies(ix: Any, md: dict) -> list[dict[str, Any]]:
        from packaging.requirements import InvalidRequirement, Requirement

        out = []
        for text in md.get("requires_dist") or []:
            try:
                r = Requirement(str(text))
            except InvalidRequirement:
                out.append({"name": str(text), "href": None, "spec": "", "marker": "", "extras": ""})
                continue
            out.append({"name": r.name, "href": f"/{ix.fullname}/{normalize_name(r.name)}",
                        "spec": str(r.specifier), "marker": str(r.marker or ""),
                        "extras": ",".join(sorted(r.extras))})
        return out

    def project_urls(md: dict) -> list[tuple[str, str, str | None]]:
        urls: list[tuple[str, str, str | None]] = []
        if md.get("home_page"):
            urls.append(("Homepage", str(md["home_page"]), safe_url(md["home_page"])))
        for entry in md.get("project_urls") or []:
            label, _, url = str(entry).partition(",")
            if not url:
                label, url = "URL", label
            urls.append((label.strip(), url.strip(), safe_url(url)))
        if md.get("download_url"):
            urls.append(("Download", str(md["download_url"]), safe_url(md["download_url"])))
        return urls

    # -- routes -----------------------------------------------------------------------------
    u, i, p, v = f"<user:re:{SEG}>", f"<index:re:{SEG}>", f"<project:re:{SEG}>", f"<version:re:{SEG}>"
    app.route("/", "GET", home)
    app.route("/+search", "GET", search_page)
    app.route("/+signin", "GET", signin)
    app.route("/+static/<filename:re:[A-Za-z0-9._-]+>", "GET", static)
    for tail in ("", "/"):
        app.route(f"/{u}{tail}", "GET", user_page)
        app.route(f"/{u}/{i}{tail}", "GET", index_page)
        app.route(f"/{u}/{i}/{p}{tail}", "GET", project_page)
        app.route(f"/{u}/{i}/{p}/{v}{tail}", "GET", version_page)
    app.route(f"/{u}/{i}/+goto", "GET", goto)
    app.route(f"/{u}/{i}/{p}/{v}/+toxresults/<basename>", "GET", toxresult_page)
    app.route(f"/{u}/{i}/{p}/{v}/+testruns/<run_id:int>", "GET", testrun_page)
    app.route(f"/{u}/{i}/{p}/{v}/+doc", "GET", doc_redirect)
    app.route(f"/{u}/{i}/{p}/{v}/+doc/<path:path>", "GET", doc_page)
    app.route(f"/{u}/{i}/{p}/{v}/+doc/", "GET", doc_page)
    app.route(f"/{u}/{i}/{p}/+doc/<version:re:latest|stable>/<path:path>", "GET", doc_page)
    app.route(f"/{u}/{i}/{p}/+doc/<version:re:latest|stable>/", "GET", doc_page)
    app.route(f"/{u}/{i}/{p}/+doc/<version:re:latest|stable>", "GET", doc_redirect)
    return app


__all__ = ["build_web_app", "error_page", "SECURITY_HEADERS", "Markup"]
