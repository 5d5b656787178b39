"""Passwords, login tokens, and the per-process memory of verified credentials.

Password hashes are scrypt (stdlib). Argon2 hashes, as the original devpi-server 6 wrote
them, are verified too (argon2-cffi), so users moved in with ``devpi import`` keep their
passwords; their cost parameters came from elsewhere and are bounded before any derivation
(``argon2_within_bounds``). Deriving a key is deliberately slow, so a
server that re-derives on every request (as twine's Basic auth would cause)
spends most of an upload hashing. We verify a password once and then remember
the success for a short while in a bounded, per-process cache. An entry is
bound to the stored hash it was checked against, so changing the password
invalidates it at once. Nothing is derived at start-up.

Tokens are ``devpi~<user>~<expires>~<hmac>``: opaque to clients, checked with
one HMAC (no key derivation), and tied to the user's current password hash so
that a password change revokes them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from .scope import TokenScope

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_LIFETIME = 36000  # seconds, as the original devpi
CACHE_TTL = 120.0
CACHE_SIZE = 1024


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


# Bounds on a carried argon2 hash's cost: devpi-server 6 uses m=102400 KiB, t=2, p=8. A hash
# demanding more is refused rather than derived (a crafted export must not make each login
# allocate gigabytes).
ARGON2_MAX_MEMORY_KIB = 256 * 1024
ARGON2_MAX_TIME = 16
ARGON2_MAX_PARALLELISM = 16


def argon2_within_bounds(pwhash: str) -> bool:
    """Is ``pwhash`` an argon2 hash (PHC string) this server verifies at a bounded cost?"""
    if not pwhash.startswith("$argon2"):
        return False
    try:
        from argon2 import extract_parameters
        from argon2.exceptions import InvalidHashError

        try:
            params = extract_parameters(pwhash)
        except (InvalidHashError, ValueError):
            return False
    except ImportError:
        return False
    return (params.memory_cost <= ARGON2_MAX_MEMORY_KIB and params.time_cost <= ARGON2_MAX_TIME
            and params.parallelism <= ARGON2_MAX_PARALLELISM)


def _verify_argon2(password: str, pwhash: str) -> bool:
    if not argon2_within_bounds(pwhash):
        return False
    from argon2 import PasswordHasher
    from argon2.exceptions import Argon2Error

    try:
        return PasswordHasher().verify(pwhash, password)
    except (Argon2Error, ValueError):
        return False


def verify_password(password: str, pwhash: str) -> bool:
    if pwhash.startswith("$argon2"):
        return _verify_argon2(password, pwhash)
    try:
        scheme, n, r, p, salt, dk = pwhash.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(dk)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class AuthUnavailable(Exception):
    """The source of identities (an LDAP directory) could not answer: the request fails with
    503 and this message, rather than as a wrong password (which would count against the
    user's login throttle) or a success (fail closed)."""


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    scope: TokenScope | None = None  # a scoped token's limits; None: the user's full rights


class TokenSigner:
    PREFIX = "devpi~"

    def __init__(self, secret: bytes):
        self._secret = secret

    def _sig(self, user: str, expires: int, pwhash: str) -> str:
        msg = f"{user}\n{expires}\n{pwhash}".encode()
        return base64.urlsafe_b64encode(hmac.digest(self._secret, msg, "sha256")[:24]).decode()

    def issue(self, user: str, pwhash: str, lifetime: int = TOKEN_LIFETIME) -> str:
        expires = int(time.time()) + lifetime
        return f"{self.PREFIX}{user}~{expires}~{self._sig(user, expires, pwhash)}"

    @classmethod
    def looks_like_token(cls, value: str) -> bool:
        return value.startswith(cls.PREFIX)

    def check(self, user: str, token: str, pwhash: str) -> bool:
        try:
            _, tuser, expires_s, sig = token.split("~")
            expires = int(expires_s)
        except ValueError:
            return False
        if tuser != user or expires < time.time():
            return False
        return hmac.compare_digest(sig, self._sig(user, expires, pwhash))


class VerifiedCache:
    """Bounded LRU of (user, password digest, stored hash) that verified recently."""

    def __init__(self, secret: bytes, size: int = CACHE_SIZE, ttl: float = CACHE_TTL):
        self._secret = secret
        self._size = size
        self._ttl = ttl
        self._entries: OrderedDict[tuple[str, bytes, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, user: str, password: str, pwhash: str) -> tuple[str, bytes, str]:
        return (user, hmac.digest(self._secret, password.encode(), "sha256"), pwhash)

    def hit(self, user: str, password: str, pwhash: str) -> bool:
        key = self._key(user, password, pwhash)
        with self._lock:
            until = self._entries.get(key)
            if until is None:
                return False
            if until < time.monotonic():
                del self._entries[key]
                return False
            self._entries.move_to_end(key)
            return True

    def remember(self, user: str, password: str, pwhash: str) -> None:
        key = self._key(user, password, pwhash)
        with self._lock:
            self._entries[key] = time.monotonic() + self._ttl
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def forget_user(self, user: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == user]:
                del self._entries[key]


class Authenticator:
    """Turns (user, password-or-token) into an Identity, or None."""

    def __init__(self, secret: bytes):
        self.tokens = TokenSigner(secret)
        self.cache = VerifiedCache(secret)

    def authenticate(self, user: str, secret: str, pwhash: str | None) -> Identity | None:
        if pwhash is None:
            return None
        if TokenSigner.looks_like_token(secret):
            return Identity(user) if self.tokens.check(user, secret, pwhash) else None
        if self.cache.hit(user, secret, pwhash):
            return Identity(user)
        if verify_password(secret, pwhash):
            self.cache.remember(user, secret, pwhash)
            return Identity(user)
        return None


def parse_basic(header: str) -> tuple[str, str] | None:
    """Decode ``Basic base64(user:pw)``; None for anything malformed."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    return parse_devpi_auth(value.strip())


def parse_devpi_auth(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep and user else None
