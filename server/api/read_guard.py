"""Read access (``acl_read``) for every route under ``/<user>/<index>``, in one place.

A bottle plugin wraps each route whose URL names an index: before its view
runs, the reader must be allowed to read that index (``Core.may_read``), else
the answer is 401 (no or bad credentials: with ``WWW-Authenticate: Basic
realm="devpi"``, which makes pip, uv and twine send credentials or ask keyring)
or 403 (a known user without the right). The check is the default: a route
opts out only by saying so when it is registered (``read_acl=False``), so a
view added later cannot forget it. The few routes that opt out are writes their
views guard themselves (creating, changing, deleting an index; uploading or
pushing to it: a push also needs read, see push.py) and ``+api`` (URLs built from
the name, nothing of the contents).

The check costs a dictionary lookup for an index anyone may read; the reader's
identity is computed only for a restricted one. Cross-index surfaces (the user
and index listings, the changelog) filter what they show with ``may_read``
themselves; the cached-page fast path checks in http/cached_page_lane.py.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import bottle

from ..accounts.scope import READ
from ..core import Core
from ..store.catalog import IndexRow
from .httpkit import APIError, credentials, identity

REALM = 'Basic realm="devpi"'


def refusal(core: Core, request: bottle.BaseRequest, ix: IndexRow) -> APIError | None:
    """None if this request's reader may read ``ix``, else the error to answer with."""
    if core.readable_by_anyone(ix):
        return None
    ident = identity(core, request)
    if core.may_read(ident, ix):
        return None
    if ident is None:
        if credentials(request):
            return APIError(401, f"authentication failed: {ix.fullname} needs a user allowed to read it",
                            {"WWW-Authenticate": REALM})
        return APIError(401, f"{ix.fullname} is not public: log in or send credentials to read it",
                        {"WWW-Authenticate": REALM})
    return APIError(403, f"user {ident.user!r} may not read {ix.fullname}")


def require_read(core: Core, request: bottle.BaseRequest, ix: IndexRow) -> None:
    error = refusal(core, request, ix)
    if error is not None:
        raise error


def reader_hides(core: Core, request: bottle.BaseRequest, ix: IndexRow) -> tuple[str, ...]:
    """The members of ``ix``'s resolution order this request's reader may not read."""
    if core.chain_open(ix.fullname):
        return ()
    return core.hidden_members(identity(core, request), ix)


def visible_indexes(core: Core, request: bottle.BaseRequest, indexes: list[IndexRow]) -> list[IndexRow]:
    """The indexes of a listing (``GET /``, ``GET /<user>``) this request's reader may read:
    the others are left out, names and all (the reader's identity is asked only if one is
    restricted)."""
    if all(core.readable_by_anyone(ix) for ix in indexes):
        return indexes
    ident = identity(core, request)
    return [ix for ix in indexes if core.may_read(ident, ix)]


def readable_entry(core: Core, request: bottle.BaseRequest, entry: dict) -> dict:
    """A changelog entry as this request's reader may see it: root sees every change; anyone
    else not the changes to the contents (releases, files, projects, yanks, test runs) of an
    index they may not read now, nor of one that no longer exists (its ACL is gone with it).
    Changes of the index itself (``kind: index``: created, modified, deleted) stay: they
    carry its name only, and index names are not secret (doc/security.md). The entry says
    how many it withheld (``withheld``), so a reader can tell an empty entry from a
    filtered one, but not what was in it."""
    changes = entry.get("changes") or []
    if not any(_about_contents(c) for c in changes):
        return entry
    ident = identity(core, request)
    if ident is not None and ident.user == "root" and core.within_scope(ident, READ, None) is ident:
        return entry
    indexes = core.indexes()
    kept = []
    for change in changes:
        if _about_contents(change):
            ix = indexes.get(change["index"])
            if ix is None or not core.may_read(ident, ix):
                continue
        kept.append(change)
    if len(kept) == len(changes):
        return entry
    return {**entry, "changes": kept, "withheld": len(changes) - len(kept)}


def _about_contents(change: object) -> bool:
    return isinstance(change, dict) and bool(change.get("index")) and change.get("kind") != "index"


class ReadGuard:
    """The bottle plugin (install it after the error plugin: it raises APIError)."""

    name = "devpi-read-acl"
    api = 2

    def __init__(self, core: Core):
        self.core = core

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        if "<index" not in route.rule or "<user" not in route.rule or route.config.get("read_acl") is False:
            return callback
        core = self.core

        @functools.wraps(callback)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            user, index = kwargs.get("user"), kwargs.get("index")
            if user is not None and index is not None:
                ix = core.get_index(user, index)
                if ix is not None:  # else the view answers its 404 (or creates it)
                    require_read(core, bottle.request, ix)
            return callback(*args, **kwargs)

        return guarded
