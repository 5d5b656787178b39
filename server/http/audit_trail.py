"""Records writes and failed logins in the audit log, for every view at once.

A WSGI layer: after the app answered, a request is recorded when its method may change
something (anything but GET, HEAD and OPTIONS: user/index create, modify, delete, uploads,
pushes, yanks, toxresults, logins, token operations, and refused attempts at them, with
their status), or when credentials it carried failed (the authentication leaves its
verdict in the environ, api/httpkit.authenticate). Who: the authenticated user, the name
tried for a failed login, else nobody (anonymous). Where from: the client address as
``--trusted-proxy`` resolves it (http/trusted_proxies.py).

Requests the throttle refuses (429) before any password is checked are not recorded as
failures: they prove nothing, and a guesser must not be able to flush the log faster than
the throttle lets it try.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("devpi.server.audit")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AUTH_FAILED = "devpi.auth_failed"  # set by api/httpkit.authenticate (the same names there)
AUTH_USER = "devpi.auth_user"


class AuditTrail:
    def __init__(self, app: Callable, core: Core):
        self.app = app
        self.core = core

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        status: list[str] = []

        def start(s: str, headers: list, exc_info: Any = None) -> Callable:
            status.append(s)
            return start_response(s, headers, exc_info)

        result = self.app(environ, start)
        method = environ.get("REQUEST_METHOD", "")
        failed = environ.get(AUTH_FAILED)
        if method in READ_METHODS and failed is None:
            return result
        if status:
            self._record(environ, status[0], failed)
            return result
        return _RecordOnClose(result, lambda: self._record(environ, status[0] if status else "-", failed))

    def _record(self, environ: dict, status_line: str, failed: str | None) -> None:
        try:
            code = int(status_line[:3])
        except ValueError:
            code = 0
        ident = environ.get("devpi.identity")
        user = failed if failed is not None else (
            ident.user if ident is not None else environ.get(AUTH_USER))
        path = environ.get("PATH_INFO", "")
        try:
            path = path.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
        try:
            self.core.audit.append(event="auth-failure" if failed is not None else "write", user=user,
                                   client=self.core.proxies.client_addr(environ),
                                   method=environ.get("REQUEST_METHOD", "?"), path=path, status=code)
        except Exception:  # the answer went out already: the log must say so, the client cannot
            log.exception("audit: could not record %s %s", environ.get("REQUEST_METHOD"), path[:200])


class _RecordOnClose:
    """A response whose status is known only once it is iterated (a streaming app)."""

    def __init__(self, result: Iterable[bytes], record: Callable[[], None]):
        self.result = result
        self.record = record

    def __iter__(self):
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.record()
