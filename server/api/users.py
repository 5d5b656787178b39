"""Users: create, show, modify, delete (devpi's /<user> JSON API)."""
from __future__ import annotations

import bottle

from ..accounts.api_tokens import looks_like_token as looks_like_api_token
from ..accounts.auth import TokenSigner, hash_password
from ..core import Core
from ..packaging.names import InvalidName, check_user_or_index_name
from ..store import catalog
from ..store.catalog import USER_KEYS, Conflict
from ..store.field_limits import FieldTooLarge, check_fields
from .httpkit import APIError, credentials, identity, json_reply, read_json, require_identity
from .meta import USER_SEG
from .read_guard import visible_indexes

IGNORED_KEYS = {"created", "modified", "indexes", "username"}
SCOPED_TOKEN = ("a scoped API token cannot change users (password, settings, tokens, deletion): "
                "use the password or a login token")


def _user_changes(body: object) -> tuple[dict, str | None]:
    if not isinstance(body, dict):
        raise APIError(400, "user config must be a JSON object")
    unknown = sorted(k for k in body if k not in USER_KEYS and k not in IGNORED_KEYS
                     and k not in ("password", "pwhash"))
    if unknown:
        raise APIError(400, "Unknown keys in user config: " + ", ".join(unknown))
    password = body.get("password")
    if password is not None and not isinstance(password, str):
        raise APIError(400, "password must be a string")
    if password and TokenSigner.looks_like_token(password):  # it would be checked as a token
        raise APIError(400, f"a password must not begin with {TokenSigner.PREFIX!r} (that marks login tokens)")
    if password and looks_like_api_token(password):
        raise APIError(400, "a password must not have the form of an API token (devpi_<id>_<secret>)")
    changes = {k: body[k] for k in USER_KEYS if k in body}
    try:
        check_fields(changes)
    except FieldTooLarge as e:
        raise APIError(400, str(e)) from None
    return changes, password


def _same_config(changes: dict, current: dict) -> bool:
    """Whether ``changes`` leaves the stored values as they are (devpi-client's passwd sends
    the whole user dict back with only the password new)."""
    def value(v: object) -> object:
        return None if v in (None, "", [], {}) else v

    return all(value(v) == value(current.get(k)) for k, v in changes.items())


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request

    def show(user: str):
        with core.storage.read() as conn:
            u = catalog.get_user(conn, user)
            if u is None:
                raise APIError(404, f"no user {user!r}")
            cfg = u.public()
            listed = catalog.list_indexes(conn, user)
        # an index the reader may not read is not listed (read_guard.visible_indexes)
        cfg["indexes"] = {ix.name: ix.public() for ix in visible_indexes(core, req, listed)}
        return json_reply(cfg, "userconfig")

    def create(user: str):
        ident = identity(core, req)
        if core.is_scoped(ident):  # a token acts for its user, never creates others
            raise APIError(403, SCOPED_TOKEN)
        if not core.modify_policy.may_create_user(ident):
            if ident is None:
                raise APIError(401, "this server restricts who may create users (--restrict-modify): "
                                    "log in as one of them", {"WWW-Authenticate": 'Basic realm="pypi"'})
            raise APIError(403, f"no permission to create user {user} (--restrict-modify)")
        try:
            check_user_or_index_name(user, "user name")
        except InvalidName as e:
            raise APIError(400, str(e)) from None
        changes, password = _user_changes(read_json(req) or {})
        if not password:
            raise APIError(400, "password needs to be set")
        pwhash = hash_password(password)
        try:
            with core.storage.write(user) as tx:
                u = catalog.create_user(tx, user, pwhash, changes)
        except Conflict as e:
            raise APIError(409, str(e)) from None
        cfg = u.public()
        cfg["indexes"] = {}
        return json_reply(cfg, "userconfig", status=201)

    def modify(user: str):
        ident = identity(core, req)
        if ident is None and not credentials(req):  # as the original: anonymous is refused, not challenged
            with core.storage.read() as conn:
                if catalog.get_user(conn, user) is None:
                    raise APIError(404, f"no user {user!r}")
            raise APIError(403, f"no permission to modify user {user}: log in first")
        ident = require_identity(core, req)
        if core.is_scoped(ident):
            raise APIError(403, SCOPED_TOKEN)
        full = core.may_modify_user(ident, user)
        if not full and not core.modify_policy.may_change_password(ident, user):
            raise APIError(403, f"no permission to modify user {user}")
        changes, password = _user_changes(read_json(req) or {})
        # "" is a password too (the original sets it): only a missing one leaves it as it is
        pwhash = hash_password(password) if password is not None else None
        with core.storage.write(ident.user) as tx:
            u = catalog.get_user(tx.conn, user)
            if u is None:
                raise APIError(404, f"no user {user!r}")
            if not full and not _same_config(changes, u.config):
                raise APIError(403, f"no permission to modify user {user}: this server restricts that "
                                    "(--restrict-modify), only the password may be changed")
            u = catalog.modify_user(tx, u, changes, pwhash)
        if pwhash:
            token = core.auth.tokens.issue(user, u.pwhash)
            from ..accounts.auth import TOKEN_LIFETIME

            return json_reply({"password": token, "expiration": TOKEN_LIFETIME}, "userpassword",
                              "user updated, new proxy auth")
        return json_reply(message="user updated")

    def delete(user: str):
        ident = require_identity(core, req)
        if core.is_scoped(ident):
            raise APIError(403, SCOPED_TOKEN)
        if user == "root":
            raise APIError(403, "root user cannot be deleted")
        if not core.may_modify_user(ident, user):
            raise APIError(403, f"no permission to delete user {user}")
        with core.storage.write(ident.user) as tx:
            if catalog.get_user(tx.conn, user) is None:
                raise APIError(404, f"no user {user!r}")
            stuck = [ix.name for ix in catalog.list_indexes(tx.conn, user)
                     if not ix.config.get("volatile", True)]
            if stuck:
                raise APIError(403, f"user {user!r} has non-volatile index: {', '.join(stuck)}")
            # indexes of others that name this user's indexes as bases lose those bases
            catalog.delete_user(tx, user)
        return json_reply(message=f"user {user!r} deleted")

    for path in (f"/{USER_SEG}", f"/{USER_SEG}/"):
        app.route(path, "GET", show)
        app.route(path, "PUT", create)
        app.route(path, "PATCH", modify)
        app.route(path, "DELETE", delete)
