"""Scoped API tokens under attack.

The attacker holds another user's token, a forged or truncated one, a token of a
user since deleted, or no account at all, and tries to use, list, create or revoke
tokens, or to send bodies the token API must refuse. What must hold: a token works
only as its owner (or ``__token__``), only while its row exists and has not expired,
in every process at once (two servers on one PostgreSQL); only the owner (with the
password or a login token) or root manages tokens; every refusal is a JSON 4xx.
"""
from __future__ import annotations

import base64
import time

import pytest
import requests
from support.tokens import expire_token


def hdr(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode(),
            "Accept": "application/json"}


def authstatus(server, user: str, secret: str) -> list:
    r = requests.get(f"{server.url}/+api", headers=hdr(user, secret), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["result"]["authstatus"][:2]


def create(server, auth, user=None, body=None, **kw) -> requests.Response:
    return server.api("POST", f"/{user or auth[0]}/+token-create", json=body, auth=auth, **kw)


def token_of(server, auth, **body) -> tuple[str, str]:
    r = create(server, auth, body={"allowed": ["upload"], **body})
    assert r.status_code == 200, r.text
    return r.json()["result"]["token"], r.json()["result"]["id"]


@pytest.fixture(scope="module")
def srv(sec_servers):
    # the module's deliberate failures would add up to the default throttle (it has its own test)
    return sec_servers(args=("--login-rate", "1000/60", "--login-rate-user", "1000/60"))


@pytest.fixture(scope="module")
def users(srv):
    alice = srv.create_user("alice", "alice-pw")
    bob = srv.create_user("bob", "bob-pw")
    srv.create_index(alice, "dev")
    return alice, bob


def test_another_users_name_with_a_token_is_refused(srv, users):
    alice, bob = users
    token, _ = token_of(srv, alice)
    assert authstatus(srv, "alice", token) == ["ok", "alice"]
    assert authstatus(srv, "bob", token) == ["noauth", ""]
    assert authstatus(srv, "root", token) == ["noauth", ""]
    r = requests.get(f"{srv.url}/bob/+tokens", headers=hdr("bob", token), timeout=30)
    assert r.status_code == 401 and r.json()["message"]


def test_bob_cannot_manage_alices_tokens(srv, users):
    alice, bob = users
    _, token_id = token_of(srv, alice)
    assert create(srv, bob, user="alice", body={"allowed": ["upload"]}).status_code == 403
    assert srv.api("GET", "/alice/+tokens", auth=bob).status_code == 403
    r = srv.api("DELETE", f"/alice/+tokens/{token_id}", auth=bob)
    assert r.status_code == 403 and r.json()["message"]
    # bob's own token list does not reach alice's tokens either
    assert srv.api("DELETE", f"/bob/+tokens/{token_id}", auth=bob).status_code == 404
    assert token_id in srv.api("GET", "/alice/+tokens", auth=alice).json()["result"]["tokens"]


@pytest.mark.parametrize("value", [
    "devpi_" + "a" * 12 + "_" + "A" * 43,  # well formed, no such row
    "devpi_short_secret",
    "devpi_" + "a" * 12 + "_" + "A" * 43 + "x",
    "devpi_" + "a" * 5000,
    "\x00devpi_",
    "",
])
def test_garbage_tokens_are_refused(srv, users, value):
    for user in ("__token__", "alice"):
        r = requests.get(f"{srv.url}/+api", headers=hdr(user, value), timeout=30)
        assert r.status_code == 200 and r.json()["result"]["authstatus"][:2] == ["noauth", ""]
        r = requests.get(f"{srv.url}/alice/+tokens", headers=hdr(user, value), timeout=30)
        assert r.status_code == 401 and r.json()["message"]


def test_forged_secret_on_a_real_id_is_refused(srv, users):
    alice, _ = users
    token, token_id = token_of(srv, alice)
    devpi, tid, secret = token.split("_", 2)  # the secret may hold "_" itself
    prefix = f"{devpi}_{tid}"
    forged = prefix + "_" + ("B" if secret[0] != "B" else "C") + secret[1:]
    assert authstatus(srv, "__token__", forged) == ["noauth", ""]
    assert authstatus(srv, "alice", forged) == ["noauth", ""]
    # the login token format cannot be bent into an API token or the reverse
    assert authstatus(srv, "alice", "devpi~alice~9999999999~" + secret) == ["noauth", ""]
    assert authstatus(srv, "__token__", alice[1]) == ["noauth", ""]


def test_anonymous_cannot_create_list_or_revoke(srv, users):
    r = requests.post(f"{srv.url}/alice/+token-create", json={"allowed": ["upload"]}, timeout=30)
    assert r.status_code == 401 and r.json()["message"]
    assert requests.get(f"{srv.url}/alice/+tokens", timeout=30).status_code == 401
    assert requests.delete(f"{srv.url}/alice/+tokens/abc", timeout=30).status_code == 401


@pytest.mark.parametrize("body, status", [
    ({"allowed": ["upload"], "description": "x" * 201}, 400),
    ({"allowed": ["upload"], "description": "x" * 2_000_000}, 413),
    ({"allowed": ["upload"], "description": "two\nlines"}, 400),
    ({"allowed": ["upload"], "description": 5}, 400),
    ({"allowed": ["upload", "change-password"]}, 400),
    ({"allowed": []}, 400),
    ({}, 400),
    ({"allowed": "upload", "indexes": [f"alice/i{n}" for n in range(33)]}, 400),
    ({"allowed": "upload", "indexes": ["../etc"]}, 400),
    ({"allowed": "upload", "indexes": ["alice"]}, 400),
    ({"allowed": "upload", "indexes": [1]}, 400),
    ({"allowed": "upload", "expires": time.time() + 400 * 86400}, 400),
    ({"allowed": "upload", "expires": time.time() - 10}, 400),
    ({"allowed": "upload", "expires": True}, 400),
    ({"allowed": "upload", "expires": "never"}, 400),
    ({"allowed": "upload", "expires": "9" * 400}, 400),
    ({"allowed": "upload", "expires": 10**400}, 400),
    ({"allowed": "upload", "projects": ["x"]}, 400),
    (["upload"], 400),
])
def test_bad_create_bodies_are_refused(srv, users, body, status):
    alice, _ = users
    before = srv.api("GET", "/alice/+tokens", auth=alice).json()["result"]["tokens"]
    r = create(srv, alice, body=body)
    assert r.status_code == status, r.text
    assert r.json()["message"]
    assert srv.api("GET", "/alice/+tokens", auth=alice).json()["result"]["tokens"] == before


def test_form_bodies_are_refused(srv, users):
    """A web page can make a browser POST a form with remembered credentials: only JSON counts."""
    alice, _ = users
    r = srv.api("POST", "/alice/+token-create", data={"allowed": "upload"}, auth=alice)
    assert r.status_code == 415 and r.json()["message"]


def test_root_revokes_another_users_token(srv, users):
    alice, _ = users
    token, token_id = token_of(srv, alice)
    root = srv.login("root", "root")
    listed = srv.api("GET", "/alice/+tokens", auth=root)
    assert listed.status_code == 200 and token_id in listed.json()["result"]["tokens"]
    r = srv.api("DELETE", f"/alice/+tokens/{token_id}", auth=root)
    assert r.status_code == 200, r.text
    assert authstatus(srv, "__token__", token) == ["noauth", ""]
    # root may also create one for alice: it is alice's, limited as asked
    r = create(srv, root, user="alice", body={"allowed": ["read"]})
    assert r.status_code == 200 and r.json()["result"]["user"] == "alice"
    assert authstatus(srv, "__token__", r.json()["result"]["token"]) == ["ok", "alice"]


def test_a_token_cannot_mint_tokens_or_logins(srv, users):
    alice, _ = users
    r = create(srv, alice, body={"allowed": list(("read", "upload", "toxresult", "push", "delete",
                                                  "index-admin"))})
    full = r.json()["result"]["token"]
    r = srv.api("POST", "/alice/+token-create", json={"allowed": ["upload"]}, headers=hdr("alice", full))
    assert r.status_code == 403
    r = srv.api("POST", "/+login", json={"user": "alice", "password": full})
    assert r.status_code == 200 and r.json()["result"]["password"] == full  # the token, not a login
    r = srv.api("PATCH", "/alice", json={"password": "pwned"}, headers=hdr("alice", full))
    assert r.status_code == 403
    assert srv.api("PUT", "/mallory", json={"password": "x"}, headers=hdr("alice", full)).status_code == 403


def test_password_shaped_like_a_token_is_refused(srv, users):
    alice, _ = users
    r = srv.api("PATCH", "/alice", json={"password": "devpi_" + "a" * 12 + "_" + "A" * 43}, auth=alice)
    assert r.status_code == 400 and "token" in r.json()["message"]


def test_token_of_a_deleted_user_dies_with_the_user(srv):
    carol = srv.create_user("carol", "carol-pw")
    token, _ = token_of(srv, carol)
    assert authstatus(srv, "__token__", token) == ["ok", "carol"]
    assert srv.api("DELETE", "/carol", auth=srv.login("root", "root")).status_code == 200
    assert authstatus(srv, "__token__", token) == ["noauth", ""]
    srv.create_user("carol", "other-pw")  # a new carol does not inherit the old one's tokens
    assert authstatus(srv, "__token__", token) == ["noauth", ""]
    assert authstatus(srv, "carol", token) == ["noauth", ""]


def test_bad_token_guessing_is_throttled_by_address(sec_servers):
    s = sec_servers()
    fake = "devpi_" + "a" * 12 + "_" + "A" * 43
    statuses = [requests.get(f"{s.url}/+api", headers=hdr("__token__", fake), timeout=30).status_code
                for _ in range(12)]
    assert statuses[:10] == [200] * 10 and statuses[-1] == 429


# -- two processes, one PostgreSQL ---------------------------------------------------------

@pytest.fixture
def two_servers(sec_servers, pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    shared = tmp_path / "shared-serverdir"
    return sec_servers(serverdir=shared, storage=url), sec_servers(serverdir=shared, storage=url)


def test_revoke_and_expiry_on_one_process_hold_on_the_other_at_once(two_servers):
    a, b = two_servers
    dave = a.create_user("dave", "dave-pw")
    token, token_id = token_of(a, dave)
    other, other_id = token_of(a, dave)
    for _ in range(3):
        assert authstatus(b, "__token__", token) == ["ok", "dave"]
        assert authstatus(b, "__token__", other) == ["ok", "dave"]
    assert a.api("DELETE", f"/dave/+tokens/{token_id}", auth=dave).status_code == 200
    assert authstatus(b, "__token__", token) == ["noauth", ""]
    expire_token(a.storage, other_id)
    assert authstatus(b, "__token__", other) == ["noauth", ""]
    assert authstatus(a, "__token__", other) == ["noauth", ""]


def test_token_as_basic_user_name_with_empty_password(srv, users):
    """devpi-tokens' form: the token where the user name goes, nothing after the colon."""
    alice, _ = users
    token, _ = token_of(srv, alice)
    assert authstatus(srv, token, "") == ["ok", "alice"]
    assert authstatus(srv, "devpi_" + "a" * 12 + "_" + "A" * 43, "") == ["noauth", ""]
