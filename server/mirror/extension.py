"""The mirror extension's registration: what the core needs at start-up, without the mirror.

Mirror indexes (server/mirror/repository.py) bring their page parser, download machinery,
policy and cache store: imports no request needs until one reaches a mirror.
This module is an internal plugin (server/plugins.py): through the hooks of
server/hooks.py it registers the index type, the ``+e/`` routes, the shutdown
work and the warm-up, and imports server/mirror/repository.py only when the first mirror
repository is made (by that request, or by the warm-up after the server's
first answer).
"""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from ..hooks import IndexType, hookimpl

log = logging.getLogger("devpi.server.mirror")

if TYPE_CHECKING:
    import bottle

    from ..core import Core
    from ..repos.repository import Repository
    from ..store.catalog import IndexRow


def _make_mirror(core: Core, ix: IndexRow) -> Repository:
    from .repository import MirrorRepository

    return MirrorRepository(core, ix)


def _routes(app: bottle.Bottle, core: Core) -> None:
    """Files whose upstream link has no hash live under +e/ (devpi's layout)."""
    import bottle

    from ..api.httpkit import APIError, require_index
    from ..api.meta import INDEX_SEG, USER_SEG

    def get_external(user: str, index: str, path: str) -> bottle.HTTPResponse:
        ix = require_index(core, user, index)
        serve = getattr(core.single_repository(ix), "serve_file", None)
        if ix.type != "mirror" or serve is None:
            raise APIError(404, f"no such file: {ix.fullname}/+e/{path}")
        return serve("+e/" + path, bottle.request)

    for method in ("GET", "HEAD"):
        app.route(f"/{USER_SEG}/{INDEX_SEG}/+e/<path:path>", method, get_external)


def _loaded(module: str) -> Any:
    """A mirror module if something imported it (no mirror was used otherwise: nothing to do).
    One a stop interrupted while it was being imported (a SIGTERM just after the start) has
    not run yet either: nothing to do for it."""
    found = sys.modules.get(f"{__package__}.{module}")
    if found is None or getattr(getattr(found, "__spec__", None), "_initializing", False):
        return None
    return found


def _finish_downloads() -> None:
    fetch = _loaded("fetch")
    if fetch is not None:
        fetch.wait_running()


def _flush_stores() -> None:
    store = _loaded("store")
    if store is not None:
        store.flush_all()


def _warm_up(core: Core) -> None:
    from .repository import warm_up

    warm_up(core)


@hookimpl
def devpiserver_index_types() -> list[IndexType]:
    return [IndexType("mirror", _make_mirror)]  # its config keys are indexconfig.MIRROR_KEYS


@hookimpl
def devpiserver_add_routes(app: bottle.Bottle, core: Core) -> None:
    _routes(app, core)


@hookimpl
def devpiserver_configure(core: Core) -> None:
    if not core.config.offline:
        core.after_start("mirror-warm-up", lambda: _warm_up(core))


@hookimpl
def devpiserver_shutdown() -> None:
    # In this order at a clean stop: let downloads record their files, then commit the queue.
    for step in (_finish_downloads, _flush_stores):
        try:
            step()
        except Exception:
            log.exception("mirror shutdown step %s failed", step.__name__)
