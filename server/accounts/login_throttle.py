"""Slowing down password guessing: token buckets of failed logins.

Every failed authentication (``/+login``, Basic auth, ``X-Devpi-Auth``) takes
a token from two buckets, the client address's and the user name's. While a
bucket is empty the next attempt is answered 429 with ``Retry-After`` before
any password is checked, so the guesser learns nothing and costs us no key
derivation. Buckets refill continuously: with ``10/60`` a client that made 10
bad guesses gets one more every 6 s, and the full allowance back after a
minute of quiet.

The per-user bucket (default ``20/60``, across all addresses) exists because
an attacker may have many addresses. It would let such an attacker lock the
real user out, so a (user, address) pair that authenticated successfully in
the last day is exempt from it (only its address bucket applies). A real user
on a new address can be held off while someone is guessing that user's
password from many addresses; nobody else's login is affected, and the lock
ends one refill interval (3 s by default) after the guessing stops.

IPv6 clients are counted by /64, as one host usually holds a whole /64.
Counters are per process (several processes on one PostgreSQL multiply the
allowance by their number) and bounded: at most ``MAX_KEYS`` buckets and
remembered successes, the least recently touched dropped first.
"""
from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_KEYS = 10_000
KNOWN_GOOD_FOR = 86400.0  # seconds a successful (user, address) stays exempt from the user bucket
DEFAULT_ADDRESS_RATE = "10/60"
DEFAULT_USER_RATE = "20/60"


@dataclass(frozen=True)
class Rate:
    """``count`` failures per ``seconds``: also the burst allowed after a quiet spell."""
    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str | None) -> Rate | None:
        """``N/SECONDS`` (``10/60``); ``off`` or ``0`` disables."""
        text = (text or "off").strip().lower()
        if text in ("off", "0", "none"):
            return None
        count_s, sep, seconds_s = text.partition("/")
        try:
            count, seconds = int(count_s), float(seconds_s if sep else "60")
        except ValueError:
            raise ValueError(f"not a rate: {text!r} (use N/SECONDS, e.g. 10/60, or off)") from None
        if count < 1 or not (0 < seconds < 1e7):
            raise ValueError(f"not a rate: {text!r} (N >= 1 failures per SECONDS > 0)")
        return cls(count, seconds)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


class Buckets:
    """Token buckets by key, least recently touched dropped beyond ``max_keys``."""

    def __init__(self, rate: Rate, max_keys: int = MAX_KEYS):
        self.rate = rate
        self.max_keys = max_keys
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def _level(self, key: str, now: float) -> float:
        entry = self._levels.get(key)
        if entry is None:
            return float(self.rate.count)
        tokens, at = entry
        return min(float(self.rate.count), tokens + (now - at) * self.rate.per_second)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        level = self._level(key, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate.per_second

    def take(self, key: str, now: float) -> None:
        self._levels[key] = (max(0.0, self._level(key, now) - 1.0), now)
        self._levels.move_to_end(key)
        while len(self._levels) > self.max_keys:
            self._levels.popitem(last=False)


def address_key(addr: str) -> str:
    """IPv6 addresses by their /64 (one host, one network), everything else as is."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and not ip.ipv4_mapped:
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)


class LoginThrottle:
    def __init__(self, address_rate: Rate | None, user_rate: Rate | None, max_keys: int = MAX_KEYS,
                 clock=time.monotonic):
        self._by_address = Buckets(address_rate, max_keys) if address_rate else None
        self._by_user = Buckets(user_rate, max_keys) if user_rate else None
        self._known_good: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._by_address is not None or self._by_user is not None

    def retry_after(self, user: str | None, addr: str) -> int:
        """Whole seconds this attempt must wait (0: go ahead and check the password).

        ``user`` None: a name no user can have, counted by address only (never a key)."""
        if not self.enabled:
            return 0
        now = self._clock()
        key = address_key(addr)
        with self._lock:
            wait = self._by_address.wait(key, now) if self._by_address else 0.0
            if self._by_user and user is not None and not self._is_known_good(user, key, now):
                wait = max(wait, self._by_user.wait(user, now))
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, user: str | None, addr: str) -> None:
        if not self.enabled:
            return
        now = self._clock()
        key = address_key(addr)
        with self._lock:
            if self._by_address:
                self._by_address.take(key, now)
            if self._by_user and user is not None and not self._is_known_good(user, key, now):
                self._by_user.take(user, now)

    def succeeded(self, user: str, addr: str) -> None:
        if self._by_user is None:
            return
        pair = (user, address_key(addr))
        until = self._clock() + KNOWN_GOOD_FOR
        with self._lock:
            self._known_good[pair] = until
            self._known_good.move_to_end(pair)
            if len(self._known_good) > self._max_keys:
                self._known_good.popitem(last=False)

    def _is_known_good(self, user: str, key: str, now: float) -> bool:
        until = self._known_good.get((user, key))
        return until is not None and until > now
