"""A replica answers reads only: any other method gets 503 naming the primary.

Forwarding writes to the primary (and answering once the serial has come back) is a later
slice; until then a client is told where to send its write. Logging in writes nothing (the
token is signed with the replicated secret), so ``POST /+login`` is answered here.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from ..api.httpkit import JSON_CT, json_body

READS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOWED_WRITES = frozenset({("POST", "/+login")})


class ReadOnly:
    def __init__(self, app: Callable, primary_url: str):
        self.app = app
        self.primary_url = primary_url

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method in READS or (method, environ.get("PATH_INFO", "")) in ALLOWED_WRITES:
            return self.app(environ, start_response)
        body = json_body({"message": f"this server is a read-only replica: send {method} requests to the "
                                     f"primary at {self.primary_url} (replicas do not forward writes yet)",
                          "primary": self.primary_url})
        start_response("503 Service Unavailable", [
            ("Content-Type", JSON_CT), ("Content-Length", str(len(body))), ("X-Devpi-Primary-Url", self.primary_url)])
        return [body]
