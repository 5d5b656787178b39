"""Scoped API tokens: their string form, and turning one into an :class:`Identity`.

A token is ``devpi_<id>_<secret>``: the prefix tells it apart from a password and from
the 10-hour login token (``devpi~...``, auth.py), and lets secret scanners spot a leaked
one; the 12-character id names its row, so checking a token is one primary-key look-up;
the secret is 32 random bytes (``secrets.token_urlsafe``). Only the SHA-256 of the secret
is stored: it is far too long to guess, so a slow password hash would buy nothing and
cost every request.

The row is read on every authenticated request (on PostgreSQL through the autocommit
connection of live_pwhash.py, one round trip): revoking a token, its expiry and deleting
its user take effect at once in every process, with no cache to invalidate.

Like PyPI, the user name may be ``__token__``; the owner's name works too (devpi's
clients send the logged-in user's name with whatever ``devpi login`` stored).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ..store import tokens as token_rows
from ..store.storage import Storage
from ..store.tokens import TokenRow
from .auth import Identity
from .scope import TokenScope

log = logging.getLogger("devpi.server.auth")

PREFIX = "devpi_"
TOKEN_USER = "__token__"  # PyPI's convention: the user name that says "the password is a token"
ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l/0/1: read aloud or retyped without doubt
ID_LENGTH = 12
_TOKEN = re.compile(r"devpi_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
TOUCH_INTERVAL = 60.0  # seconds: last_used is written at most this often per token
_TOUCHED_MAX = 10_000

_COLUMNS = ("id", "owner", "secret_hash", "actions", "indexes", "expires", "description", "created",
            "last_used")
LIVE_QUERY = f"SELECT {', '.join(_COLUMNS)} FROM tokens WHERE id = %s"


def new_token() -> tuple[str, str, str]:
    """(id, secret, the token string) of a fresh token."""
    token_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"{PREFIX}{token_id}_{secret}"


def parse(value: str) -> tuple[str, str] | None:
    """(id, secret) of a string shaped like a token, else None (it is then a password)."""
    m = _TOKEN.fullmatch(value) if len(value) < 100 else None
    return (m.group(1), m.group(2)) if m else None


def looks_like_token(value: str) -> bool:
    return parse(value) is not None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def scope_of(row: TokenRow) -> TokenScope:
    return TokenScope(row.id, frozenset(row.actions),
                      frozenset(row.indexes) if row.indexes is not None else None)


class ApiTokens:
    """Checks tokens against their rows; ``live`` (PostgreSQL): live_pwhash.LivePwhash."""

    def __init__(self, storage: Storage, live: Any = None):
        self._storage = storage
        self._live = live
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()

    def row(self, token_id: str) -> TokenRow | None:
        if self._live is not None:
            values = self._live.fetchone(LIVE_QUERY, (token_id,))
            return token_rows.row_to_token(SimpleNamespace(**dict(zip(_COLUMNS, values, strict=True)))) if values else None
        with self._storage.read() as conn:
            return token_rows.get_token(conn, token_id)

    def check(self, user: str, value: str) -> TokenRow | None:
        """The row of the valid, unexpired token ``value`` when ``user`` may present it."""
        parsed = parse(value)
        if parsed is None:
            return None
        token_id, secret = parsed
        row = self.row(token_id)
        if row is None or not hmac.compare_digest(row.secret_hash, secret_hash(secret)):
            return None
        if user not in (TOKEN_USER, row.owner) or row.expires <= time.time():
            return None
        self._touch(row)
        return row

    def authenticate(self, user: str, value: str,
                     groups_of: Callable[[str], tuple[str, ...]] | None = None) -> Identity | None:
        """The owner's identity, limited to the token's scope (with the owner's groups)."""
        row = self.check(user, value)
        if row is None:
            return None
        return Identity(row.owner, groups_of(row.owner) if groups_of else (), scope_of(row))

    def _touch(self, row: TokenRow) -> None:
        """Record the use, unless the row (or this process) did within ``TOUCH_INTERVAL``:
        one small write a minute per busy token, not one per request."""
        now, mono = time.time(), time.monotonic()
        if row.last_used is not None and row.last_used > now - TOUCH_INTERVAL:
            return
        with self._touch_lock:
            if self._touched.get(row.id, -TOUCH_INTERVAL) > mono - TOUCH_INTERVAL:
                return
            if len(self._touched) >= _TOUCHED_MAX:
                self._touched.clear()
            self._touched[row.id] = mono
        try:
            with self._storage.cache_write() as conn:
                token_rows.touch(conn, row.id, now, now - TOUCH_INTERVAL)
        except Exception:  # bookkeeping: the request goes on without it
            log.warning("could not record the use of token %s", row.id, exc_info=True)
