"""The WSGI application: routes from the view modules, errors as JSON, devpi headers.

The view modules each own one part of the URL space and register their
routes on one bottle app; this module only assembles them. The optional web
part (``devpi.web``) wraps the result as middleware to answer browsers.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import bottle

from . import __version__
from .api.httpkit import JSON_CT, APIError, error_reply, json_body
from .core import Core
from .http.audit_trail import AuditTrail
from .http.diskfull import MESSAGE as DISK_FULL
from .http.diskfull import is_disk_full
from .http.request_log import RequestLog
from .http.routing import new_app
from .mirror.via import names_us
from .store.blobstore import BlobStoreUnavailable
from .store.storage import ReadOnlyStorage

log = logging.getLogger("devpi.server.http")
bottle.BaseRequest.MEMFILE_MAX = 1024 * 1024  # bottle's own body parsing, which no view uses (see http/request_body.py)


def _error_plugin(callback: Callable) -> Callable:
    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except APIError as e:
            return error_reply(e.status, e.message, e.headers)
        except bottle.HTTPResponse:
            raise
        except ReadOnlyStorage as e:  # a write that reached a replica's own store (forward.py sends them on)
            log.error("%s %s: %s", bottle.request.method, bottle.request.path, e)
            return error_reply(503, str(e))
        except BlobStoreUnavailable as e:
            log.error("%s %s: %s", bottle.request.method, bottle.request.path, e)
            return error_reply(503, "the blob store is not answering: try again later", {"Retry-After": "10"})
        except Exception as e:
            if is_disk_full(e):
                log.error("%s %s: %s (%s)", bottle.request.method, bottle.request.path, DISK_FULL, e)
                return error_reply(507, DISK_FULL)
            log.exception("internal error on %s %s", bottle.request.method, bottle.request.path)
            return error_reply(500, "internal server error (see the server log)")
    return wrapper


def _default_error(err: bottle.HTTPError) -> bytes:
    err.content_type = "application/json"
    message = err.body if isinstance(err.body, str) and err.body else err.status_line
    if err.status_code == 404 and message.startswith("Not found:"):
        message = f"not found: {bottle.request.path}"
    if err.status_code == 405:
        message = f"method {bottle.request.method} not allowed on {bottle.request.path}"
    if err.exception:
        log.error("error: %s", err.exception)
    return json_body({"message": message})


def build_app(core: Core) -> Callable:
    from .api import audit, files, indexes, meta, ops_status, projects, simple, tokens, users

    app = new_app(catchall=True, autojson=False)
    app.install(_error_plugin)
    from .api.read_guard import ReadGuard

    app.install(ReadGuard(core))  # inside the error plugin: its refusals leave as JSON
    app.default_error_handler = _default_error
    # Order matters: bottle tries dynamic routes in registration order, most specific first.
    for module in (meta, ops_status, audit, simple, files, indexes, users, tokens, projects):
        module.install(app, core)
    if core.plugins is not None:  # after the API: plugins (last registered first), test runs, the mirror
        core.plugins.add_routes(app, core)
    from .http.cached_page_lane import FastLane
    from .http.request_metrics import observe, observe_cached

    fastlane = FastLane(LoopGuard(_load_web(app, core), core), core)  # cached pages need no guard
    full = RequestLog(DevpiHeaders(Utf8Paths(AuditTrail(fastlane, core)), core), observe=observe)
    # the server answers cache hits in its event loop through this shorter stack
    full.fastlane = fastlane
    full.fast_wsgi = RequestLog(DevpiHeaders(fastlane, core), full.log, observe=observe_cached)
    return full


def _load_web(wsgi: Callable, core: Core) -> Callable:
    """Middleware of plugins (the web UI, devpi.web, is one): each wraps the app, in the order
    they were registered; one that fails is left out and the server runs without it."""
    if core.plugins is None:
        return wsgi
    wrappers = core.plugins.hook.devpiserver_wsgi_middleware(core=core)
    for wrapper in reversed(wrappers):  # pluggy answers last-registered first
        try:
            wsgi = wrapper(wsgi)
        except Exception:
            log.exception("middleware %r failed to load; serving without it", wrapper)
    return wsgi


class Utf8Paths:
    """Refuses a path whose percent-escapes are not UTF-8 (``/alice/c7%ff``). bottle drops
    such bytes silently, so the request would reach another resource: a DELETE of
    ``/alice/c7%ff`` would delete ``alice/c7``."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.isascii():
            try:
                path.encode("latin-1").decode("utf-8")
            except UnicodeError:
                body = json_body({"message": "the URL path is not valid UTF-8"})
                start_response("400 Bad Request", [("Content-Type", JSON_CT),
                                                   ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)


class LoopGuard:
    """Refuses at once a request that one of this server's own mirrors sent (its mark in
    ``X-Devpi-Via``, see mirror/via.py): a mirror whose upstream is this server would otherwise
    hold a thread per hop until its upstream timeout, and every hop asks again."""

    def __init__(self, app: Callable, core: Core):
        self.app = app
        self.core = core

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if names_us(environ.get("HTTP_X_DEVPI_VIA"), self.core.via_mark):
            body = json_body({"message": "loop: this request came from a mirror on this server itself"})
            start_response("409 Conflict", [("Content-Type", JSON_CT), ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)


def devpi_headers(core: Core, serial: int) -> dict[str, str]:
    """What :class:`DevpiHeaders` adds to an answer given at ``serial`` (the start-up
    snapshot of simple pages stores them with each page: http/page_snapshot_writer.py)."""
    return {"X-Devpi-Api-Version": "2", "X-Devpi-Server-Version": __version__, "X-Devpi-Serial": str(serial),
            "X-Devpi-Uuid": core.uuid, "X-Devpi-Primary-Uuid": core.uuid, "X-Devpi-Master-Uuid": core.uuid}


class DevpiHeaders:
    """Adds devpi's protocol headers (API version, serial, uuids) to every response (the
    same as :func:`devpi_headers`, appended one by one: this runs on every answer)."""

    def __init__(self, app: Callable, core: Core):
        self.app = app
        self.core = core

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        core = self.core

        def start(status: str, headers: list, exc_info: Any = None) -> Callable:
            headers.append(("X-Devpi-Api-Version", "2"))
            headers.append(("X-Devpi-Server-Version", __version__))
            headers.append(("X-Devpi-Serial", str(core.storage.current_serial)))
            headers.append(("X-Devpi-Uuid", core.uuid))
            headers.append(("X-Devpi-Primary-Uuid", core.uuid))
            headers.append(("X-Devpi-Master-Uuid", core.uuid))
            if core.response_headers is not None:
                headers.extend(core.response_headers())
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
