"""Finding 11: password guessing is throttled per client address and per user.

The attacker guesses root's password as fast as the server answers, over
``/+login`` and over Basic auth on any endpoint, from one address or (behind
a proxy that forwards X-Forwarded-For) from many. After a few failures the
server must answer 429 with Retry-After and a JSON message, before checking
the password; the real user must get back in once the window has passed,
and from an address they logged in from before even while the guessing goes on.
"""
from __future__ import annotations

import time

import requests
from support.dists import write_wheel


def login(server, user, password, headers=None):
    return requests.post(f"{server.url}/+login", json={"user": user, "password": password},
                         headers=headers or {}, timeout=30)


def assert_throttled(r):
    assert r.status_code == 429, r.text
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 120
    assert "too many failed logins" in r.json()["message"]
    return wait


def test_default_limit_stops_guessing_root_over_login(sec_servers):
    """With the default options, 300 guesses at ~10/s used to be 300 plain 401s: the first
    10 failures from one address are answered, then 429 (one more guess per 6 s), and every
    attempt meanwhile (even the right password) is refused without being checked."""
    server = sec_servers()
    statuses = [login(server, "root", f"guess{i}").status_code for i in range(20)]
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    assert_throttled(login(server, "root", "root"))


def test_basic_auth_on_write_endpoints_is_throttled_and_recovers(sec_servers, tmp_path):
    """Guessing through Basic auth on an upload and on PATCH /<user> counts the same as
    /+login; after Retry-After seconds the real password works again."""
    server = sec_servers(args=("--login-rate", "4/20", "--login-rate-user", "off"))
    alice = server.create_user("alice", "right")
    server.create_index(alice, "dev")
    wheel = write_wheel(tmp_path, "pkg", "1.0")
    codes = [server.upload("alice/dev", wheel, ("alice", f"wrong{i}")).status_code for i in range(2)]
    codes += [requests.patch(f"{server.url}/alice", json={"email": "x@example.invalid"},
                             auth=("alice", f"wrong{i}"), timeout=30).status_code for i in range(2)]
    assert codes == [401] * 4
    r = requests.patch(f"{server.url}/alice", json={"email": "x@example.invalid"}, auth=("alice", "right"),
                       timeout=30)
    wait = assert_throttled(r)
    assert_throttled(server.upload("alice/dev", wheel, ("alice", "right")))
    time.sleep(wait + 0.2)
    assert server.upload("alice/dev", wheel, ("alice", "right")).status_code == 200
    r = requests.patch(f"{server.url}/alice", json={"email": "x@example.invalid"}, auth=("alice", "right"),
                       timeout=30)
    assert r.status_code == 200, r.text


def test_many_users_from_one_address_are_throttled_by_address(sec_servers):
    """Spraying one guess at each of many user names stays under any per-user limit; the
    address's own limit stops it."""
    server = sec_servers(args=("--login-rate", "5/60", "--login-rate-user", "off"))
    for i in range(6):
        server.create_user(f"u{i}", "pw")
    codes = [login(server, f"u{i}", "wrong").status_code for i in range(6)]
    assert codes == [401] * 5 + [429]
    assert_throttled(login(server, "u0", "pw"))


def test_guessing_from_many_addresses_does_not_lock_out_a_known_address(sec_servers):
    """An attacker with many addresses (forwarded by a trusted proxy) guesses root's password
    one address at a time: the per-user limit stops them, but root can still log in from
    the address it used before the attack, and a right guess no longer helps from new ones."""
    server = sec_servers(args=("--login-rate", "10/60", "--login-rate-user", "5/60"))

    def via(addr):
        return {"X-Forwarded-For": addr}

    assert login(server, "root", "root", via("10.9.9.9")).status_code == 200  # root's own address
    codes = [login(server, "root", "wrong", via(f"10.0.0.{i}")).status_code for i in range(1, 9)]
    assert codes == [401] * 5 + [429] * 3
    assert_throttled(login(server, "root", "root", via("10.0.1.1")))
    assert login(server, "root", "root", via("10.9.9.9")).status_code == 200
    # another user is not affected by the attack on root
    assert login(server, "nobody-else", "x", via("10.0.2.1")).status_code == 401


def test_forwarded_for_from_an_untrusted_peer_is_ignored(sec_servers):
    """Without a trusted proxy, X-Forwarded-For is the client's own claim: rotating it must
    not give a guesser a fresh address allowance."""
    server = sec_servers(args=("--trusted-proxy", "none", "--login-rate", "3/60", "--login-rate-user", "off"))
    codes = [login(server, "root", "wrong", {"X-Forwarded-For": f"10.0.0.{i}"}).status_code for i in range(5)]
    assert codes == [401] * 3 + [429] * 2
