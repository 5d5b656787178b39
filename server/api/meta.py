"""Discovery and session: /+api, /+login, /+status, /+changelog, and the user list."""
from __future__ import annotations

import time

import bottle

from ..accounts.auth import Identity
from ..core import Core
from ..packaging.names import is_user_name
from ..runtime.metrics import LOGINS
from ..store import catalog
from .httpkit import APIError, authenticate, base_url, identity, json_reply, read_json, require_index
from .read_guard import readable_entry, visible_indexes


def disk_status(core: Core, request: bottle.BaseRequest) -> dict:
    """Disk used per index, for the indexes this reader may read (an index they may not read
    is left out, as in ``GET /``), and, for root only, the server-wide figures (the blob
    store's and the mirror cache's sizes would otherwise tell an anonymous reader how much a
    restricted index holds, and how its size changes)."""
    per_index = core.disk.per_index(core.storage)
    readable = visible_indexes(core, request, list(core.indexes().values()))
    result: dict = {"indexes": {ix.fullname: per_index.get(ix.id, {"bytes": 0, "files": 0}) for ix in readable}}
    ident = identity(core, request)
    if ident is not None and ident.user == "root":
        result["server"] = core.disk.as_dict()
    return result

FEATURES = ["server-keyvalue-parsing", "push-no-docs", "push-only-docs", "push-register-project"]
USER_SEG = "<user:re:[^+/][^/]*>"
INDEX_SEG = "<index:re:[^+/][^/]*>"

MAX_POLL_WAIT = 30.0  # seconds a /+changelog long-poll may wait for the next serial


def poll_timeout(text: str | None) -> float:
    """``?timeout=`` of a long-poll: a finite, non-negative number of seconds, clamped."""
    if text is None:
        return MAX_POLL_WAIT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):  # also false for nan
        raise APIError(400, f"timeout must be a non-negative number of seconds, not {text[:40]!r}")
    return min(value, MAX_POLL_WAIT)


def _token_login(core: Core, ident: Identity, token: str) -> bottle.HTTPResponse:
    """Logging in with a scoped API token gives back that token: a login token would carry
    the user's full rights. ``user`` tells ``devpi login --token`` whose it is."""
    row = core.api_tokens.row(ident.scope.token_id) if ident.scope else None
    if row is None:  # revoked in between
        raise APIError(401, "the token could not be authenticated")
    lifetime = max(0, int(row.expires - time.time()))
    return json_reply({"password": token, "expiration": lifetime, "user": row.owner,
                       "token": {"id": row.id, "allowed": list(row.actions),
                                 "indexes": list(row.indexes) if row.indexes is not None else None}},
                      "proxyauth", "login successful (scoped API token)")


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request

    def apiconfig(user: str | None = None, index: str | None = None):
        root = base_url(core, req)
        ident = identity(core, req)
        result = {
            "login": f"{root}/+login",
            "authstatus": ["ok", ident.user, list(ident.groups)] if ident else ["noauth", "", []],
            "features": FEATURES,
        }
        if index is not None:
            ix = require_index(core, user, index)
            result["index"] = f"{root}/{ix.fullname}"
            result["simpleindex"] = f"{root}/{ix.fullname}/+simple/"
            if ix.type == "stage":
                result["pypisubmit"] = f"{root}/{ix.fullname}/"
        return json_reply(result, "apiconfig")

    app.route("/+api", "GET", lambda: apiconfig())
    app.route(f"/{USER_SEG}/+api", "GET", lambda user: apiconfig(user))
    # discovery (devpi use): URLs made from the name, nothing of the contents
    app.route(f"/{USER_SEG}/{INDEX_SEG}/+api", "GET", apiconfig, read_acl=False)

    @app.route("/+login", "POST")
    def login():
        body = read_json(req)
        if not isinstance(body, dict) or not body.get("user") or "password" not in body:
            raise APIError(400, "Bad request: no user/password specified")
        user, password = str(body["user"]), str(body["password"])
        try:
            ident = authenticate(core, req, user, password)
        except APIError as e:
            LOGINS.labels("throttled" if e.status == 429 else "failed").inc()
            raise
        LOGINS.labels("failed" if ident is None else "ok").inc()
        if ident is None:
            # an impossible name (megabytes, control characters) is not echoed back
            shown = repr(user) if is_user_name(user) else "with an invalid name"
            raise APIError(401, f"user {shown} could not be authenticated")
        if ident.scope is not None:
            return _token_login(core, ident, password)
        with core.storage.read() as conn:
            u = catalog.get_user(conn, user)
        # a user only a plugin knows (no local row): its token is signed without a hash, and
        # only the plugins' authentication accepts such tokens (plugins.PluginAuth)
        token = core.auth.tokens.issue(user, u.pwhash if u else "")
        from ..accounts.auth import TOKEN_LIFETIME

        return json_reply({"password": token, "expiration": TOKEN_LIFETIME}, "proxyauth",
                          "login successful")

    @app.route("/+status", "GET")
    def status():
        return json_reply({**core.status(), "disk": disk_status(core, req)}, "status")

    @app.route("/+changelog/<serial:int>", "GET")
    def changelog(serial: int):
        current = core.storage.current_serial
        if serial > current + 1:
            raise APIError(404, f"serial {serial} is beyond the next serial {current + 1}")
        if serial == current + 1:
            wait = 1.0 if "initial_fetch" in req.query else poll_timeout(req.query.get("timeout"))
            if not core.storage.wait_for_serial(serial, wait):
                return json_reply(None, None, f"no change after serial {current} yet", status=202)
        entry = core.storage.changelog_entry(serial)
        if entry is None:
            raise APIError(404, f"no changelog entry for serial {serial}")
        return json_reply(readable_entry(core, req, entry), "changelog")

    @app.route("/", "GET")
    def list_users():
        with core.storage.read() as conn:
            users = catalog.list_users(conn)
            indexes = catalog.list_indexes(conn)
        result = {}
        indexes = visible_indexes(core, req, indexes)  # an index the reader may not read is not listed
        for u in users:
            cfg = u.public()
            cfg["indexes"] = {ix.name: ix.public() for ix in indexes if ix.user == u.name}
            result[u.name] = cfg
        return json_reply(result, "list:userconfig")
