"""Finding 11 (review): user names in credentials are checked before anything else sees them.

The attacker logs in with names no user can have: a megabyte of letters in a
``/+login`` body (which may be 10 MiB), or a name with a NUL, which PostgreSQL
refuses as a query parameter. Such names used to become login-throttle keys
(megabytes each, from one address), were echoed back in the 401 message, and
on PostgreSQL the NUL reached the password-hash query and answered 500. Every
auth path (``/+login``, Basic, ``X-Devpi-Auth``) must answer a short plain 401
(a 4xx in any case, never 5xx), counted against the client's address only.
"""
from __future__ import annotations

import base64

import pytest
import requests

BIG_NAME = "a" * (1024 * 1024)
HEADER_NAME = "b" * 40_000  # fits the 64 KiB request-head limit once base64-encoded
NUL_NAME = "root\x00"


def login(server, user: str, password: str = "root") -> requests.Response:
    return requests.post(f"{server.url}/+login", json={"user": user, "password": password}, timeout=60)


def encoded(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_refused_briefly(r: requests.Response) -> None:
    """A plain 401 whose JSON message does not carry the name back (a megabyte reply)."""
    assert r.status_code == 401, (r.status_code, r.text[:300])
    assert len(r.content) < 1000, len(r.content)
    assert "could not be authenticated" in r.json()["message"] or "authentication failed" in r.json()["message"]


@pytest.mark.parametrize("name", [BIG_NAME, NUL_NAME, "root\u202e", "+root"], ids=["1MiB", "NUL", "bidi", "plus"])
def test_impossible_names_over_login_are_a_short_401(engine_srv, name):
    """/+login with a 1 MiB name, a NUL, a bidi control or a leading '+': 401, never 500, no echo."""
    assert_refused_briefly(login(engine_srv, name))


@pytest.mark.parametrize("header", ["Authorization", "X-Devpi-Auth"])
@pytest.mark.parametrize("name", [HEADER_NAME, NUL_NAME], ids=["40k", "NUL"])
def test_impossible_names_in_auth_headers_are_a_401(engine_srv, header, name):
    """Basic and X-Devpi-Auth credentials with such names on a write endpoint: 401, never 500."""
    value = encoded(name, "root")
    value = f"Basic {value}" if header == "Authorization" else value
    r = requests.patch(f"{engine_srv.url}/root", json={"email": "x@example.invalid"},
                       headers={header: value, "Accept": "application/json"}, timeout=60)
    assert_refused_briefly(r)


def test_impossible_names_count_against_the_address(sec_servers):
    """Spraying impossible names is still guessing: they empty the client's address bucket
    (then 429 for everyone on that address, even with root's right password)."""
    server = sec_servers(args=("--login-rate", "3/60", "--login-rate-user", "2/60"))
    codes = [login(server, f"x\x00{i}").status_code for i in range(3)]
    assert codes == [401] * 3
    r = login(server, "root", "root")
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1


def test_impossible_names_do_not_touch_the_user_bucket(sec_servers):
    """With only a per-user limit, names that differ from 'root' by a NUL or control character
    are not 'root': root still logs in after many of them."""
    server = sec_servers(args=("--login-rate", "off", "--login-rate-user", "2/600"))
    codes = [login(server, name, "wrong").status_code for name in ("root\x00", "root\x00", "root\n", "root\x00x")]
    assert codes == [401] * 4
    assert login(server, "root", "root").status_code == 200
