"""The mark a server's mirrors put on their upstream requests (``X-Devpi-Via``).

A mirror whose upstream is, by some address the creation check cannot know,
this server itself would tie up a thread per hop; so every upstream request
carries a mark and the server refuses requests bearing its own (app.LoopGuard).
The mark goes to every upstream, which may be anyone's ``mirror_url``: the
server's uuid (also sent as ``X-Devpi-Uuid`` to every client) would let an
upstream identify and track the server. The mark is an HMAC of a fixed label
with the server's secret instead: stable, shared by all processes on one
database (so a loop through another process is caught too), and unlinkable
to anything else the server sends.
"""
from __future__ import annotations

import hashlib
import hmac

_LABEL = b"devpi X-Devpi-Via loop mark"


def via_mark(secret: bytes) -> str:
    return hmac.new(secret, _LABEL, hashlib.sha256).hexdigest()[:32]


def names_us(header: str | None, mark: str) -> bool:
    """Whether an ``X-Devpi-Via`` header (one mark, or several separated by commas or spaces
    when requests passed through other servers' mirrors) carries ``mark``."""
    return bool(header) and bool(mark) and mark in header.replace(",", " ").split()
