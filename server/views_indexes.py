"""Indexes: create, show, modify (dict or devpi's k=v list), delete; PUSH/POST dispatch."""
from __future__ import annotations

import bottle

from . import catalog, indexconfig
from .catalog import Conflict, IndexRow
from .core import Core
from .httpkit import APIError, is_installer, json_reply, read_json, require_identity, require_index
from .indexconfig import ConfigError
from .names import InvalidName, check_user_or_index_name
from .storage import WriteTx
from .views_meta import INDEX_SEG, USER_SEG


def check_bases(tx: WriteTx, fullname: str, config: dict) -> None:
    """Every base must exist, and following bases must never lead back to this index."""
    all_ix = {ix.fullname: ix for ix in catalog.list_indexes(tx.conn)}
    for base in config.get("bases") or []:
        if base not in all_ix:
            raise APIError(400, f"base index {base!r} does not exist")
    graph = {name: ix.bases for name, ix in all_ix.items()}
    graph[fullname] = list(config.get("bases") or [])
    stack, seen = list(graph[fullname]), set()
    while stack:
        name = stack.pop()
        if name == fullname:
            raise APIError(400, f"bases of {fullname} form a cycle through {name!r}")
        if name in seen:
            continue
        seen.add(name)
        stack.extend(graph.get(name, []))


def check_local_mirror(user: str, config: dict, current_url: str | None = None) -> None:
    """A mirror of a local directory (``file:`` URL) reads the server's own files: only root
    may point one there (an index someone else set up that way may keep its URL)."""
    url = config.get("mirror_url") or ""
    if url.startswith("file:") and url != current_url and user != "root":
        raise APIError(403, "only root may point a mirror at a local directory (a file: URL)")


def index_result(core: Core, ix: IndexRow, with_projects: bool) -> dict:
    result = ix.public()
    if with_projects:
        with core.storage.read() as conn:
            result["projects"] = catalog.project_names(conn, ix.id) if ix.type == "stage" else []
        if ix.type == "mirror":
            result["projects"] = sorted(core.single_repository(ix).project_names())
    return result


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request


    def show(user: str, index: str):
        accept = req.get_header("Accept") or ""
        if is_installer(req) or "application/vnd.pypi.simple" in accept:
            from .views_simple import serve_project_list

            return serve_project_list(core, user, index)
        ix = require_index(core, user, index)
        return json_reply(index_result(core, ix, "no_projects" not in req.query), "indexconfig")

    def create(user: str, index: str):
        ident = require_identity(core, req)
        try:
            check_user_or_index_name(index, "index name")
        except InvalidName as e:
            raise APIError(400, str(e)) from None
        if not core.may_create_index(ident, user):  # before the body is read
            raise APIError(403, f"no permission to create index {user}/{index}")
        body = read_json(req) or {}
        if not isinstance(body, dict):
            raise APIError(400, "index config must be a JSON object")
        index_type = body.get("type", "stage")
        try:
            config = indexconfig.normalize(index_type, {k: v for k, v in body.items() if k != "type"},
                                           indexconfig.defaults(index_type, user))
        except ConfigError as e:
            raise APIError(400, str(e)) from None
        check_local_mirror(ident.user, config)
        with core.storage.write(ident.user) as tx:
            if catalog.get_user(tx.conn, user) is None:
                raise APIError(404, f"no user {user!r}")
            check_bases(tx, f"{user}/{index}", config)
            try:
                ix = catalog.create_index(tx, user, index, config)
            except Conflict as e:
                raise APIError(409, str(e)) from None
        return json_reply(index_result(core, ix, False), "indexconfig")

    def modify(user: str, index: str):
        ident = require_identity(core, req)
        ix = require_index(core, user, index)
        if not core.may_modify_index(ident, ix):
            raise APIError(403, f"no permission to modify index {ix.fullname}")
        body = read_json(req)
        if isinstance(body, dict) and body.get("type") == "indexconfig" and "result" in body:
            body = body["result"]
        with core.storage.write(ident.user) as tx:
            current = catalog.get_index(tx.conn, user, index)
            if current is None:
                raise APIError(404, f"The stage {user}/{index} could not be found.")
            try:
                if isinstance(body, list):
                    config = indexconfig.apply_patch_items(current.config, body, current.type, user)
                elif isinstance(body, dict):
                    config = indexconfig.normalize(current.type, body, current.config)
                else:
                    raise ConfigError("expected a JSON object or a list of 'key=value' strings")
            except ConfigError as e:
                raise APIError(400, str(e)) from None
            if config == current.config and "error_on_noop" in req.query:
                raise APIError(400, "The requested modifications resulted in no changes")
            check_local_mirror(ident.user, config, current.config.get("mirror_url"))
            check_bases(tx, current.fullname, config)
            ix = catalog.modify_index(tx, current, config)
        return json_reply(index_result(core, ix, False), "indexconfig")

    def delete(user: str, index: str):
        ident = require_identity(core, req)
        ix = require_index(core, user, index)
        if not core.may_modify_index(ident, ix):
            raise APIError(403, f"no permission to delete index {ix.fullname}")
        if not ix.config.get("volatile", True) and "force" not in req.query:
            raise APIError(403, f"index {ix.fullname} non-volatile, cannot delete")
        with core.storage.write(ident.user) as tx:
            catalog.delete_index(tx, ix)  # and out of every other index's bases (doc/api.md)
        return json_reply(message=f"index {ix.fullname} deleted", status=201)

    def post(user: str, index: str):
        ctype = (req.content_type or "").lower()
        if ctype.startswith("multipart/form-data") or ctype.startswith("application/x-www-form-urlencoded"):
            from .views_upload import handle_upload

            return handle_upload(core, user, index)
        from .push import handle_push

        return handle_push(core, require_index(core, user, index))

    for path in (f"/{USER_SEG}/{INDEX_SEG}", f"/{USER_SEG}/{INDEX_SEG}/"):
        app.route(path, "GET", show)
        app.route(path, "PUT", create)
        app.route(path, "PATCH", modify)
        app.route(path, "DELETE", delete)
        app.route(path, "POST", post)
        app.route(path, "PUSH", post)
