"""Indexes: create, show, modify (dict or devpi's k=v list), delete; PUSH/POST dispatch."""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import bottle

from ..core import Core
from ..http.request_body import is_form
from ..packaging.names import InvalidName, check_user_or_index_name
from ..store import catalog, indexconfig
from ..store.catalog import Conflict, IndexRow
from ..store.indexconfig import ConfigError
from ..store.storage import WriteTx
from .httpkit import (
    JSON_CT,
    APIError,
    is_installer,
    json_body,
    json_reply,
    read_json,
    require_identity,
    require_index,
)
from .meta import INDEX_SEG, USER_SEG


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


def check_mirror_policy(core: Core, user: str, index_type: str, config: dict, current_url: str | None = None,
                        request_host: str | None = None) -> None:
    """Who may point a mirror where (mirror/policy.py, doc/mirror.md "Security policy"): only
    mirror creators set a new mirror_url, never one naming this server, nor one that resolves
    to an address mirrors may not reach. Asks DNS: call it outside a write transaction."""
    from ..mirror.page import redact
    from ..mirror.policy import DestinationRefused, names_this_server, policy_of

    url = config.get("mirror_url") or ""
    if index_type != "mirror" or url == current_url:
        return
    policy = policy_of(core)
    if not url:  # an unconfigured mirror (as the original allows): no upstream to check yet
        if not policy.may_create(user):
            who = "root and the users named by the server's --mirror-creators" if policy.creators else "root"
            raise APIError(403, f"only {who} may create a mirror or change its mirror_url")
        return
    if not policy.may_create(user):
        who = "root and the users named by the server's --mirror-creators" if policy.creators else "root"
        raise APIError(403, f"only {who} may create a mirror or change its mirror_url")
    cfg = core.config
    if names_this_server(url, cfg.host, int(cfg.port), (cfg.outside_url, request_host)):  # port may be a str
        raise APIError(400, f"mirror_url {redact(url)} points at this server itself: "
                            "a mirror of itself would only wait for its own answers")
    try:
        policy.check_url(url)
    except DestinationRefused as e:
        raise APIError(400, f"mirror_url {redact(url)} refused: {e}") from None


def index_result(core: Core, ix: IndexRow, with_projects: bool) -> dict:
    result = ix.public()
    if with_projects:
        with core.storage.read() as conn:
            result["projects"] = catalog.project_names(conn, ix.id) if ix.type == "stage" else []
        if ix.type == "mirror":
            result["projects"] = sorted(core.single_repository(ix).project_names())
    return result


_PLACEHOLDER = "\x00projects"


def mirror_index_reply(core: Core, ix: IndexRow) -> bottle.HTTPResponse:
    """``json_reply(index_result(...))`` of a mirror, streamed: its project list can hold
    hundreds of thousands of names, so they are written a slice at a time into the same
    bytes ``json_body`` would make (see namelists), never held as a list or whole."""
    chunks = iter(core.single_repository(ix).project_name_chunks())
    first = next((c for c in chunks if c), None)
    if first is None:
        return json_reply(index_result(core, ix, False) | {"projects": []}, "indexconfig")
    body = json_body({"type": "indexconfig", "result": index_result(core, ix, False) | {"projects": [_PLACEHOLDER]}})
    at = body.index(json.dumps(_PLACEHOLDER).encode())
    indent = body[body.rindex(b"\n", 0, at) + 1:at].decode()
    head, tail = body[:at], body[at + len(json.dumps(_PLACEHOLDER)):]

    def pieces() -> Iterator[bytes]:
        yield head
        sep = ""
        for chunk in itertools.chain([first], chunks):
            if chunk:
                yield (sep + f",\n{indent}".join(json.dumps(n) for n in chunk)).encode()
                sep = f",\n{indent}"
        yield tail

    resp = bottle.HTTPResponse(pieces(), status=200)
    resp.content_type = JSON_CT
    return resp


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request


    def show(user: str, index: str):
        accept = req.get_header("Accept") or ""
        if is_installer(req) or "application/vnd.pypi.simple" in accept:
            from .simple import serve_project_list

            return serve_project_list(core, user, index)
        ix = require_index(core, user, index)
        if ix.type == "mirror" and "no_projects" not in req.query:
            return mirror_index_reply(core, ix)
        return json_reply(index_result(core, ix, "no_projects" not in req.query), "indexconfig")

    def create(user: str, index: str):
        try:
            check_user_or_index_name(index, "index name")
        except InvalidName as e:
            raise APIError(400, str(e)) from None
        with core.storage.read() as conn:  # as the original: the owner first (user names are public)
            if catalog.get_user(conn, user) is None:
                raise APIError(404, f"no user {user!r}")
        ident = require_identity(core, req)
        if not core.may_create_index(ident, user, index):  # before the body is read
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
        check_mirror_policy(core, ident.user, index_type, config, request_host=req.get_header("Host"))
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
        vetted_url = None  # a new mirror_url the policy allowed this user
        if ix.type == "mirror":  # the mirror policy asks DNS: before the write transaction
            try:
                wanted = _modified(ix, body, user)
            except ConfigError as e:
                raise APIError(400, str(e)) from None
            check_local_mirror(ident.user, wanted, ix.config.get("mirror_url"))
            check_mirror_policy(core, ident.user, ix.type, wanted, ix.config.get("mirror_url"),
                                req.get_header("Host"))
            if wanted.get("mirror_url") != ix.config.get("mirror_url"):
                vetted_url = wanted.get("mirror_url")
        with core.storage.write(ident.user) as tx:
            current = catalog.get_index(tx.conn, user, index)
            if current is None:
                raise APIError(404, f"The stage {user}/{index} could not be found.")
            try:
                config = _modified(current, body, user)
            except ConfigError as e:
                raise APIError(400, str(e)) from None
            if current.type == "mirror" and config.get("mirror_url") not in (vetted_url,
                                                                            current.config.get("mirror_url")):
                raise APIError(409, f"the mirror_url of {current.fullname} changed meanwhile: try again")
            if config == current.config and "error_on_noop" in req.query:
                raise APIError(400, "The requested modifications resulted in no changes")
            check_local_mirror(ident.user, config, current.config.get("mirror_url"))
            check_bases(tx, current.fullname, config)
            ix = catalog.modify_index(tx, current, config)
        return json_reply(index_result(core, ix, False), "indexconfig")

    def _modified(current: IndexRow, body: object, user: str) -> dict:
        if isinstance(body, list):
            return indexconfig.apply_patch_items(current.config, body, current.type, user)
        if isinstance(body, dict):
            return indexconfig.normalize(current.type, body, current.config)
        raise ConfigError("expected a JSON object or a list of 'key=value' strings")

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
        if is_form(req.content_type):
            from .upload import handle_upload

            return handle_upload(core, user, index)
        from .push import handle_push

        return handle_push(core, require_index(core, user, index))

    for path in (f"/{USER_SEG}/{INDEX_SEG}", f"/{USER_SEG}/{INDEX_SEG}/"):
        app.route(path, "GET", show)
        # writes to the index itself: their views decide (a push also needs read: push.py)
        app.route(path, "PUT", create, read_acl=False)
        app.route(path, "PATCH", modify, read_acl=False)
        app.route(path, "DELETE", delete, read_acl=False)
        app.route(path, "POST", post, read_acl=False)
        app.route(path, "PUSH", post, read_acl=False)
