"""Scoped API tokens: create, list, revoke (``/<user>/+token-create``, ``/<user>/+tokens``).

The routes and reply types are those of the devpi-tokens plugin, so its client's
``token-create``/``token-list``/``token-delete`` keep working against a server that
creates tokens from a JSON body (a form body, which any web page can make a browser
send, is not accepted: see httpkit.read_json). The secret is in the create reply only.

Only the user (with the password or a login token) or an admin (root, or a
``--restrict-modify`` principal) manages a user's tokens; a scoped token never does,
whatever its actions: a leaked upload token must not mint a broader one.
"""
from __future__ import annotations

import math
import time
from typing import Any

import bottle

from ..accounts.api_tokens import new_token, secret_hash
from ..accounts.auth import Identity
from ..accounts.scope import ACTIONS, REPLICATE
from ..core import Core
from ..packaging.names import is_user_name
from ..store import catalog
from ..store import tokens as token_rows
from ..store.tokens import TokenRow
from .httpkit import APIError, json_reply, read_json, require_identity
from .meta import USER_SEG
from .users import SCOPED_TOKEN

MAX_LIFETIME = 366 * 86400  # seconds: a token lives at most about a year
DEFAULT_LIFETIME = 365 * 86400  # devpi-tokens' default when no expiry is sent
MAX_DESCRIPTION = 200  # characters
MAX_INDEXES = 32
MAX_TOKENS_PER_USER = 100  # unexpired ones; expired tokens of the user are dropped on create
MAX_BODY = 16 * 1024
KNOWN_KEYS = {"allowed", "indexes", "expires", "description"}


def _names(value: Any, what: str) -> list[str]:
    """A JSON list of strings, or one comma-separated string (devpi-tokens' form)."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise APIError(400, f"{what} must be a list of strings or one comma-separated string")
    items = [v for v in dict.fromkeys(items) if v]
    if not items:
        raise APIError(400, f"{what} must not be empty")
    return items


def parse_allowed(value: Any) -> tuple[str, ...]:
    if value is None:
        raise APIError(400, f"say what the token may do: allowed, some of {', '.join(ACTIONS)}")
    if isinstance(value, (str, list)) and len(value) > 1000:
        raise APIError(400, "allowed is too long")
    actions = _names(value, "allowed")
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        shown = ", ".join(repr(a[:40]) for a in unknown[:5])
        raise APIError(400, f"unknown action {shown}: use {', '.join(ACTIONS)}")
    return tuple(actions)


def parse_indexes(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, list)) and len(value) > MAX_INDEXES * 202:
        raise APIError(400, f"a token names at most {MAX_INDEXES} indexes")
    names = _names(value, "indexes")
    if len(names) > MAX_INDEXES:
        raise APIError(400, f"a token names at most {MAX_INDEXES} indexes, not {len(names)}")
    for name in names:
        user, sep, index = name.partition("/")
        if not sep or not is_user_name(user) or not is_user_name(index):
            raise APIError(400, f"not an index name (USER/INDEX): {name[:100]!r}")
    return tuple(names)


def parse_expires(value: Any, now: float) -> float:
    if value is None:
        return now + DEFAULT_LIFETIME
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 20:
        value = int(value)  # devpi-tokens sends form fields, so a string of digits
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**12:
        value = float(value)  # a bigger int would overflow float(); no expiry is that far off
    if not isinstance(value, float) or not math.isfinite(value):
        raise APIError(400, "expires must be a unix time (seconds since 1970, a number)")
    if value <= now:
        raise APIError(400, "expires must be in the future")
    if value > now + MAX_LIFETIME:
        raise APIError(400, f"expires must be at most {MAX_LIFETIME // 86400} days from now")
    return float(value)


def parse_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise APIError(400, "description must be a string")
    if len(value) > MAX_DESCRIPTION:
        raise APIError(400, f"description is longer than {MAX_DESCRIPTION} characters")
    if not value.isprintable():
        raise APIError(400, "description must be one line of printable text")
    return value


def check_replicate(core: Core, owner: str, indexes: tuple[str, ...] | None) -> None:
    """A replicate token reads every row of every index: an admin's, for no index in particular."""
    if indexes is not None:
        raise APIError(400, "a replicate token follows the whole server: it cannot be limited to indexes")
    if not core.modify_policy.is_admin(Identity(owner)):
        raise APIError(403, f"only an admin's token may replicate (root, or a user listed in "
                            f"--restrict-modify), not {owner[:100]!r}'s")


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request

    def manager(user: str) -> Identity:
        """The caller, if they may manage ``user``'s tokens (else 401/403, 404 for no user)."""
        ident = require_identity(core, req)
        if core.is_scoped(ident):
            raise APIError(403, SCOPED_TOKEN)
        if ident.user != user and not core.modify_policy.is_admin(ident):
            raise APIError(403, f"no permission to manage the tokens of user {user[:100]!r}")
        with core.storage.read() as conn:
            if catalog.get_user(conn, user) is None:
                raise APIError(404, f"no user {user!r}")
        return ident

    def create(user: str):
        ident = manager(user)
        body = read_json(req, max_bytes=MAX_BODY)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise APIError(400, "send a JSON object: allowed, indexes, expires, description")
        unknown = sorted(str(k)[:40] for k in body if k not in KNOWN_KEYS)
        if unknown:
            raise APIError(400, f"unknown keys: {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_KEYS))})")
        now = time.time()
        actions = parse_allowed(body.get("allowed"))
        indexes = parse_indexes(body.get("indexes"))
        expires = parse_expires(body.get("expires"), now)
        description = parse_description(body.get("description"))
        if REPLICATE in actions:
            check_replicate(core, user, indexes)
        token_id, secret, token = new_token()
        row = TokenRow(token_id, user, secret_hash(secret), actions, indexes, expires, description, now, None)
        with core.storage.write(ident.user) as tx:
            if catalog.get_user(tx.conn, user) is None:
                raise APIError(404, f"no user {user!r}")
            existing = token_rows.list_tokens(tx.conn, user)
            live = [t for t in existing if t.expires > now]
            for old in existing:
                if old.expires <= now:
                    token_rows.delete_token(tx, user, old.id)
            if len(live) >= MAX_TOKENS_PER_USER:
                raise APIError(409, f"user {user} has {len(live)} tokens, the most there may be: "
                                    "revoke some first")
            token_rows.create_token(tx, row)
        return json_reply({"token": token, **row.public()}, "token-info",
                          "token created: it is shown only now")

    def listing(user: str):
        manager(user)
        now = time.time()
        with core.storage.read() as conn:
            rows = token_rows.list_tokens(conn, user)
        tokens = {t.id: {**t.public(), "expired": t.expires <= now} for t in rows}
        return json_reply({"tokens": tokens}, "tokens-info")

    def revoke(user: str, token_id: str):
        ident = manager(user)
        if not token_id.isascii() or not token_id.isalnum() or len(token_id) > 32:
            raise APIError(404, "no such token")
        with core.storage.write(ident.user) as tx:
            if not token_rows.delete_token(tx, user, token_id):
                raise APIError(404, f"user {user} has no token {token_id}")
        return json_reply(message=f"token {token_id} deleted")

    app.route(f"/{USER_SEG}/+token-create", "POST", create)
    app.route(f"/{USER_SEG}/+tokens", "GET", listing)
    app.route(f"/{USER_SEG}/+tokens/", "GET", listing)
    app.route(f"/{USER_SEG}/+tokens/<token_id>", "DELETE", revoke)
