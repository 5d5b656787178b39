"""``GET /+audit``: the audit log (store/audit_log.py), for root only.

``?since=ID`` (default 0) returns the entries after that id, oldest first, ``?limit=N``
of them (default 100, at most 1000); ``next`` is the ``since`` of the following page
(absent when this one was the last). Anonymous: 401 with a Basic challenge; any other
user: 403.
"""
from __future__ import annotations

import bottle

from ..core import Core
from ..store.audit_log import MAX_PAGE
from .httpkit import APIError, json_reply, require_identity

DEFAULT_PAGE = 100


def _count(text: str | None, name: str, default: int, top: int) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise APIError(400, f"{name} must be a whole number from 0, not {text[:40]!r}")
    return min(int(text), top)


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request

    @app.route("/+audit", "GET")
    def audit_log():
        ident = require_identity(core, req)
        if ident.user != "root" or ident.scope is not None:
            raise APIError(403, "only root may read the audit log")
        since = _count(req.query.get("since"), "since", 0, 2**62)
        limit = max(1, _count(req.query.get("limit"), "limit", DEFAULT_PAGE, MAX_PAGE))
        entries = core.audit.page(since, limit)
        result: dict = {"entries": entries}
        if len(entries) == limit:
            result["next"] = entries[-1]["id"]
        return json_reply(result, "auditlog")
