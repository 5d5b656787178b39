"""The login throttle's arithmetic, on a fake clock (the HTTP behaviour is tested in
tests/security/test_sec_auth_throttle.py)."""
from __future__ import annotations

import pytest
from devpi.server.accounts.login_throttle import LoginThrottle, Rate, address_key
from devpi.server.http.trusted_proxies import TrustedProxies, valid_host


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_rate_parsing():
    assert Rate.parse("10/60") == Rate(10, 60.0)
    assert Rate.parse("off") is None and Rate.parse("0") is None
    for bad in ("abc", "-1/60", "5/0", "5/x"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_address_bucket_refills_one_guess_at_a_time():
    clock = Clock()
    t = LoginThrottle(Rate(10, 60), None, clock=clock)
    for _ in range(10):
        assert t.retry_after("root", "10.0.0.1") == 0
        t.failed("root", "10.0.0.1")
    assert t.retry_after("root", "10.0.0.1") == 6
    assert t.retry_after("root", "10.0.0.2") == 0  # another address is not affected
    clock.now += 6
    assert t.retry_after("root", "10.0.0.1") == 0
    t.failed("root", "10.0.0.1")
    assert t.retry_after("root", "10.0.0.1") == 6


def test_user_bucket_spares_addresses_that_logged_in_before():
    clock = Clock()
    t = LoginThrottle(None, Rate(3, 30), clock=clock)
    t.succeeded("root", "192.0.2.7")
    for i in range(3):
        t.failed("root", f"10.0.0.{i}")
    assert t.retry_after("root", "10.0.9.9") == 10
    assert t.retry_after("root", "192.0.2.7") == 0
    assert t.retry_after("alice", "10.0.9.9") == 0
    clock.now += 86401  # the remembered success expires
    assert t.retry_after("root", "192.0.2.7") == 0  # and the bucket has refilled meanwhile


def test_memory_is_bounded():
    clock = Clock()
    t = LoginThrottle(Rate(1, 60), Rate(1, 60), max_keys=100, clock=clock)
    for i in range(5000):
        t.failed(f"user{i}", f"10.{i // 256 % 256}.{i % 256}.1")
        t.succeeded(f"user{i}", "10.0.0.1")
    assert len(t._by_address._levels) == len(t._by_user._levels) == len(t._known_good) == 100


def test_ipv6_counts_by_64():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("unix-socket") == "unix-socket"


def test_client_address_behind_trusted_proxies():
    p = TrustedProxies("loopback,10.1.0.0/16")
    env = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.5, 10.1.2.3"}
    assert p.client_addr(env) == "203.0.113.5"  # the client's own claim (6.6.6.6) is skipped
    assert p.client_addr({**env, "REMOTE_ADDR": "198.51.100.1"}) == "198.51.100.1"
    assert p.client_addr({"REMOTE_ADDR": "127.0.0.1"}) == "127.0.0.1"
    assert p.client_addr({**env, "HTTP_X_FORWARDED_FOR": "junk, 10.1.2.3"}) == "10.1.2.3"
    assert not TrustedProxies("none").from_proxy({"REMOTE_ADDR": "127.0.0.1"})


def test_valid_host():
    for good in ("devpi", "devpi.internal:3141", "127.0.0.1:80", "[::1]:3141", "[2001:db8::1]"):
        assert valid_host(good), good
    for bad in ("", "a/b", "a@b", "a b", "a#", "a:b:c", "[::1", "x:99999999"):
        assert not valid_host(bad), bad
