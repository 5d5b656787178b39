"""Request bodies read lazily, straight from ``wsgi.input``, never past what was announced.

A view decides from the headers alone whether it wants a body at all (who is asking,
whether they may, how large it says it is) and only then reads it through a
``BodyReader``: at most ``Content-Length`` bytes (a WSGI server may block or read into
the next request past it), or, for a chunked body whose length nobody announced, up to
the limit and not a byte more. bottle's own ``request.body`` would first copy every
body into memory or a temp file of its own.
"""
from __future__ import annotations

from typing import Any

from ..api.errors import APIError


class BodyReader:
    """A file-like ``read(n)`` over one request's body, bounded by its length and a limit."""

    def __init__(self, environ: dict[str, Any], limit: int, what: str = "request body"):
        length = declared_length(environ)
        if length is not None and length > limit:
            raise APIError(413, f"{what} too large: {length} bytes, the limit is {limit} bytes")
        self._input = environ.get("wsgi.input")
        self._left = length if length is not None else (limit + 1 if is_chunked(environ) else 0)
        self._limit = limit
        self._what = what
        self.length = length  # None for a chunked body
        self.received = 0

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0 or self._input is None:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._input.read(want)
        self._left -= len(data)
        self.received += len(data)
        if self.received > self._limit:
            raise APIError(413, f"{self._what} too large: over the limit of {self._limit} bytes")
        if not data:
            self._left = 0
            if self.length is not None and self.received < self.length:
                raise APIError(400, f"{self._what} ended after {self.received} of {self.length} bytes")
        return data

    def read_all(self) -> bytes:
        """The whole body; only for bodies whose limit is small enough to hold in memory."""
        parts = []
        while data := self.read(256 * 1024):
            parts.append(data)
        return b"".join(parts)


def declared_length(environ: dict[str, Any]) -> int | None:
    """The body's Content-Length, None if absent (a chunked body, or none at all)."""
    text = (environ.get("CONTENT_LENGTH") or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise APIError(400, f"invalid Content-Length {text[:40]!r}")
    return int(text)


def is_chunked(environ: dict[str, Any]) -> bool:
    """A body sent without a length (the server has already undone the chunking, PEP 3333)."""
    return "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()


def require_length_or_chunked(environ: dict[str, Any]) -> None:
    """An upload says how it sends its body: a length, or chunks (then capped while read)."""
    if declared_length(environ) is None and not is_chunked(environ):
        raise APIError(411, "an upload needs a Content-Length header (or a chunked body)")


def is_form(content_type: str | None) -> bool:
    """A form body (an upload or a ``submit``); a POST to an index with any other body is a push."""
    ctype = (content_type or "").lower()
    return ctype.startswith("multipart/form-data") or ctype.startswith("application/x-www-form-urlencoded")
