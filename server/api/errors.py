"""Errors as devpi answers them: ``{"message": ...}`` as JSON, the message in the reason phrase.

Kept free of bottle (and of everything else the views need) so that the HTTP server
and the plugin manager can use it before the application is imported: the start-up
path answers its first requests without the web framework (server/http/startup_lane.py).
``api/httpkit.py`` re-exports these for the views.
"""
from __future__ import annotations

import json
from typing import Any

JSON_CT = "application/json"


class APIError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def reason_phrase(message: str) -> str:
    """The message as an HTTP reason phrase: one line of printable latin-1 (a control
    character, say a NUL from a URL, would make the status line invalid)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in message).split())[:300]
    return text.encode("latin-1", "replace").decode("latin-1") or "error"


def json_body(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()
