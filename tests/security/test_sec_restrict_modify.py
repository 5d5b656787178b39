"""Finding 12 (accounts): open writes, and the original devpi's ``--restrict-modify``.

By default (as the original devpi) anyone may ``PUT /<name>`` to create a
user, then create indexes under it. An admin who started the server with
``--restrict-modify=alice,:admins`` expects instead: anonymous user creation
refused, only root and the listed principals create, modify and delete users
and indexes (for any owner), while a user may still change their own password
(devpi-client's ``devpi passwd`` sends the whole user dict back).
"""
from __future__ import annotations

import pytest
from support.server import ServerProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def restricted(request, sec_servers) -> ServerProcess:
    storage = request.getfixturevalue("pg_cluster").new_database() if request.param == "postgresql" else None
    s = sec_servers(storage=storage, args=("--restrict-modify", "alice, :admins"))
    root = s.login("root", "root")
    for name in ("alice", "mallory"):
        r = s.api("PUT", f"/{name}", json={"password": "pw"}, auth=root)
        assert r.status_code == 201, r.text
    return s


@pytest.fixture(scope="module")
def open_server(sec_servers) -> ServerProcess:
    return sec_servers()


def test_anonymous_user_creation_is_refused(restricted):
    """The attacker with no account tries PUT /eve: 401, and no user eve exists."""
    r = restricted.api("PUT", "/eve", json={"password": "pw"})
    assert r.status_code == 401, r.text
    assert "restrict" in r.json()["message"]
    assert restricted.api("GET", "/eve").status_code == 404


def test_a_user_not_listed_cannot_create_users_or_indexes(restricted):
    """mallory (a user, not listed) can neither create a user nor an index of her own."""
    mallory = restricted.login("mallory", "pw")
    assert restricted.api("PUT", "/eve2", json={"password": "pw"}, auth=mallory).status_code == 403
    r = restricted.api("PUT", "/mallory/dev", json={}, auth=mallory)
    assert r.status_code == 403, r.text
    assert restricted.api("GET", "/mallory/dev").status_code == 404


def test_a_user_not_listed_cannot_modify_but_may_change_the_password(restricted):
    """devpi passwd sends the stored fields back unchanged plus the password: allowed.
    Changing any other field (here the description) is not."""
    mallory = restricted.login("mallory", "pw")
    current = restricted.api("GET", "/mallory").json()["result"]
    body = {k: v for k, v in current.items() if k not in ("indexes", "username")}
    r = restricted.api("PATCH", "/mallory", json={**body, "password": "pw2"}, auth=mallory)
    assert r.status_code == 200, r.text
    mallory = restricted.login("mallory", "pw2")
    r = restricted.api("PATCH", "/mallory", json={"description": "pwned"}, auth=mallory)
    assert r.status_code == 403, r.text
    assert "description" not in restricted.api("GET", "/mallory").json()["result"]
    assert restricted.api("DELETE", "/mallory", auth=mallory).status_code == 403


def test_listed_principals_and_root_manage_users_and_indexes(restricted):
    """alice (listed) creates a user and an index for it, modifies and deletes them; root too."""
    alice = restricted.login("alice", "pw")
    assert restricted.api("PUT", "/team", json={"password": "pw"}, auth=alice).status_code == 201
    assert restricted.api("PUT", "/team/dev", json={}, auth=alice).status_code == 200
    assert restricted.api("PATCH", "/team/dev", json={"title": "Team"}, auth=alice).status_code == 200
    root = restricted.login("root", "root")
    assert restricted.api("PUT", "/carl", json={"password": "pw"}, auth=root).status_code == 201
    assert restricted.api("PUT", "/carl/dev", json={}, auth=root).status_code == 200
    carl = restricted.login("carl", "pw")
    # the index exists, but its owner (not listed) cannot change or delete it
    assert restricted.api("PATCH", "/carl/dev", json={"title": "x"}, auth=carl).status_code == 403
    assert restricted.api("DELETE", "/carl/dev", auth=carl).status_code == 403
    # a listed principal manages any user, not only itself
    assert restricted.api("PATCH", "/carl", json={"title": "C"}, auth=alice).status_code == 200
    assert restricted.api("PATCH", "/carl/dev", json={"title": "C"}, auth=alice).status_code == 200
    assert restricted.api("DELETE", "/team/dev", auth=alice).status_code == 201
    assert restricted.api("DELETE", "/team", auth=root).status_code == 200


def test_without_the_option_the_server_stays_open_as_the_original(open_server):
    """Compatibility: devpi-client's `devpi user -c` works anonymously by default."""
    assert open_server.api("PUT", "/newbie", json={"password": "pw"}).status_code == 201
    newbie = open_server.login("newbie", "pw")
    assert open_server.api("PUT", "/newbie/dev", json={}, auth=newbie).status_code == 200
    assert open_server.api("PATCH", "/newbie", json={"title": "N"}, auth=newbie).status_code == 200
