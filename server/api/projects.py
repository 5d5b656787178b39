"""Project and version JSON in devpi's shape, deletes, and yanking.

``projectconfig`` walks the same resolution order as the simple pages (and
the same whitelist guard), so what ``devpi list`` shows is what pip gets.
"""
from __future__ import annotations

from typing import Any

import bottle

from ..core import Core
from ..packaging.names import normalize_name
from ..repos import nonvolatile
from ..store import catalog
from ..store.catalog import IndexRow
from .httpkit import APIError, base_url, json_reply, read_json, require_identity, require_index, with_project
from .meta import INDEX_SEG, USER_SEG
from .read_guard import reader_hides

PROJECT_SEG = "<project:re:[^+/][^/]*>"
VERSION_SEG = "<version:re:[^+/][^/]*>"

MAX_YANK_REASON = 1000  # characters: pip shows it on one line


def _stage_versions(core: Core, root: str, member: IndexRow, name: str) -> dict[str, dict] | None:
    with core.storage.read() as conn:
        pf = catalog.project_files(conn, member.id, name, rel=None)
    if pf is None:
        return None
    by_id = {f.id: f for f in pf.files}
    out: dict[str, dict] = {}
    for release in pf.releases.values():
        out[release.version] = {**release.metadata, "+links": []}
    for f in pf.files:
        release = pf.releases[f.release_id]
        link: dict[str, Any] = {
            "rel": f.rel, "href": f"{root}/{member.fullname}/{f.relpath}",
            "hash_spec": f"sha256={f.sha256}", "hashes": {"sha256": f.sha256}, "log": f.log,
        }
        if f.rel == "releasefile" and f.yanked is not None:
            link["yanked"] = f.yanked or True
        if f.for_file_id and f.for_file_id in by_id:
            link["for_href"] = f"{root}/{member.fullname}/{by_id[f.for_file_id].relpath}"
        out[release.version]["+links"].append(link)
    return out


def _mirror_versions(core: Core, root: str, member: IndexRow, name: str) -> dict[str, dict] | None:
    view = core.single_repository(member).get_project(name)
    if view is None:
        return None
    out: dict[str, dict] = {}
    for link in view.links:
        data = out.setdefault(link.version, {"name": view.name, "version": link.version, "+links": []})
        entry: dict[str, Any] = {"rel": "releasefile", "href": f"{root}/{link.path}"}
        if link.sha256:
            entry.update(hash_spec=f"sha256={link.sha256}", hashes={"sha256": link.sha256})
        if link.requires_python:
            data["requires_python"] = link.requires_python
        if link.yanked is not None:
            entry["yanked"] = link.yanked or True
        data["+links"].append(entry)
    return out


def project_versions(core: Core, root: str, ix: IndexRow, name: str, ignore_bases: bool = False,
                     hidden: tuple[str, ...] = ()) -> dict[str, dict] | None:
    """``hidden``: members the reader may not read (Core.hidden_members): left out, but a
    private one holding the project still keeps mirrors' releases out (as on the simple page)."""
    members = [ix] if ignore_bases else core.resolution_order(ix)
    whitelisted = core.whitelist_for(ix)
    result: dict[str, dict] = {}
    found = private = False
    for member in members:
        if member.fullname in hidden:
            if member.type != "mirror" and not private:
                with core.storage.read() as conn:
                    private = catalog.get_project(conn, member.id, name) is not None
            continue
        if member.type == "mirror":
            if private and not whitelisted(name):
                continue
            versions = _mirror_versions(core, root, member, name)
        else:
            versions = _stage_versions(core, root, member, name)
            private = private or versions is not None
        if versions is None:
            continue
        found = True
        for version, data in versions.items():
            if version in result:
                result[version].setdefault("+shadowing", []).append(data)
            else:
                result[version] = data
    return result if found else None


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request


    def redirect_if_not_normal(project: str) -> None:
        norm = normalize_name(project)
        if norm != project:
            bottle.redirect(with_project(core, req, norm), 302)

    def get_project(user: str, index: str, project: str):
        from .httpkit import is_installer

        if is_installer(req) or "application/vnd.pypi.simple" in (req.get_header("Accept") or ""):
            from .simple import serve_project_page

            return serve_project_page(core, user, index, normalize_name(project))
        redirect_if_not_normal(project)
        ix = require_index(core, user, index)
        versions = project_versions(core, base_url(core, req), ix, project, "ignore_bases" in req.query,
                                    reader_hides(core, req, ix))
        if versions is None:
            raise APIError(404, f"no project {project!r}")
        return json_reply(versions, "projectconfig")

    def get_version(user: str, index: str, project: str, version: str):
        redirect_if_not_normal(project)
        ix = require_index(core, user, index)
        versions = project_versions(core, base_url(core, req), ix, project, "ignore_bases" in req.query,
                                    reader_hides(core, req, ix))
        if not versions or version not in versions:
            raise APIError(404, f"The version {version} of project {project} does not exist.")
        return json_reply(versions[version], "versiondata")

    def delete_project(user: str, index: str, project: str):
        ident = require_identity(core, req)
        ix = require_index(core, user, index)
        project = normalize_name(project)
        if not core.may_delete(ident, ix):
            raise APIError(403, f"no permission to delete on {ix.fullname}")
        nonvolatile.check_delete(core, ident, ix, f"project {project}", "force" in req.query,
                                 f"project {project} is on non-volatile index {ix.fullname}")
        with core.storage.write(ident.user) as tx:
            p = catalog.get_project(tx.conn, ix.id, project)
            if p is None:
                raise APIError(404, f"project {project} not found on {ix.fullname}")
            catalog.remove_project(tx, ix, p)
        return json_reply(message=f"project {project} deleted from stage {ix.fullname}")

    def delete_version(user: str, index: str, project: str, version: str):
        ident = require_identity(core, req)
        ix = require_index(core, user, index)
        project = normalize_name(project)
        if not core.may_delete(ident, ix):
            raise APIError(403, f"no permission to delete on {ix.fullname}")
        nonvolatile.check_delete(core, ident, ix, f"{project} {version}", "force" in req.query,
                                 f"cannot delete version on non-volatile index {ix.fullname}")
        with core.storage.write(ident.user) as tx:
            p = catalog.get_project(tx.conn, ix.id, project)
            rel = catalog.get_release(tx.conn, p.id, version) if p else None
            if rel is None:
                raise APIError(404, f"The version {version} of project {project} does not exist on {ix.fullname}.")
            catalog.remove_release(tx, ix, p, rel.id, version)
        return json_reply(message=f"project {project} version {version!r} deleted")

    def yank(user: str, index: str, project: str, version: str, undo: bool = False):
        ident = require_identity(core, req)
        ix = require_index(core, user, index)
        project = normalize_name(project)
        if not core.may_delete(ident, ix):
            raise APIError(403, f"no permission to yank on {ix.fullname}")
        reason = ""
        if not undo:
            body = read_json(req)
            if isinstance(body, dict):
                reason = body.get("reason") or ""
                if not isinstance(reason, str) or len(reason) > MAX_YANK_REASON or not reason.isprintable():
                    raise APIError(400, f"reason must be one line of at most {MAX_YANK_REASON} printable "
                                        "characters")
        with core.storage.write(ident.user) as tx:
            p = catalog.get_project(tx.conn, ix.id, project)
            rel = catalog.get_release(tx.conn, p.id, version) if p else None
            if rel is None:
                raise APIError(404, f"The version {version} of project {project} does not exist on {ix.fullname}.")
            catalog.set_yanked(tx, ix, p, rel, None if undo else reason)
        return json_reply(message=f"{project} {version} {'unyanked' if undo else 'yanked'} on {ix.fullname}")

    proj = f"/{USER_SEG}/{INDEX_SEG}/{PROJECT_SEG}"
    ver = f"{proj}/{VERSION_SEG}"
    app.route(ver + "/+yank", "POST", yank)
    app.route(ver + "/+unyank", "POST", lambda **kw: yank(**kw, undo=True))
    for tail in ("", "/"):
        app.route(proj + tail, "GET", get_project)
        app.route(proj + tail, "DELETE", delete_project)
        app.route(ver + tail, "GET", get_version)
        app.route(ver + tail, "DELETE", delete_version)
