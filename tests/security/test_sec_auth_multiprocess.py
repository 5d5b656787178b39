"""Finding 18: a password change on one process revokes the old credentials on all.

Two server processes share one PostgreSQL database. The attacker holds alice's
old password or a token issued under it; alice changes her password through
process A. The moment A has acknowledged the change, process B must refuse the
old password and the old token (it used to accept both for about half a
second, until its changelog poller caught up), and accept the new ones.
"""
from __future__ import annotations

import base64

import pytest
import requests


@pytest.fixture
def two_servers(sec_servers, pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    shared = tmp_path / "shared-serverdir"
    return sec_servers(serverdir=shared, storage=url), sec_servers(serverdir=shared, storage=url)


def authstatus(server, user, secret):
    """Who /+api says we are with these credentials (devpi-client's way of sending them)."""
    header = base64.b64encode(f"{user}:{secret}".encode()).decode()
    r = requests.get(f"{server.url}/+api", headers={"X-Devpi-Auth": header, "Accept": "application/json"},
                     timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["result"]["authstatus"][:2]


def test_password_change_on_one_process_revokes_old_credentials_on_the_other(two_servers):
    """Old password and old token work on B before the change (B has them cached), and fail on
    B right after A acknowledged the change, with no wait; the new password and the token A
    handed back work on B at once."""
    a, b = two_servers
    _, old_token = a.create_user("alice", "old-pw")
    for _ in range(3):  # warm B's caches: verified password, stored hash
        assert authstatus(b, "alice", "old-pw") == ["ok", "alice"]
        assert authstatus(b, "alice", old_token) == ["ok", "alice"]
    for round_ in range(2):  # 6 failed logins per process: under the default 10 per address
        new_pw = f"new-pw-{round_}"
        r = requests.patch(f"{a.url}/alice", json={"password": new_pw}, auth=("alice", "old-pw"), timeout=30)
        assert r.status_code == 200, r.text
        new_token = r.json()["result"]["password"]
        assert authstatus(b, "alice", "old-pw") == ["noauth", ""]
        assert authstatus(b, "alice", old_token) == ["noauth", ""]
        assert authstatus(b, "alice", new_pw) == ["ok", "alice"]
        assert authstatus(b, "alice", new_token) == ["ok", "alice"]
        r = requests.post(f"{b.url}/+login", json={"user": "alice", "password": "old-pw"}, timeout=30)
        assert r.status_code == 401
        # back to the old password through B: A must refuse the new ones at once too
        r = requests.patch(f"{b.url}/alice", json={"password": "old-pw"}, auth=("alice", new_pw), timeout=30)
        assert r.status_code == 200, r.text
        old_token = r.json()["result"]["password"]
        assert authstatus(a, "alice", new_pw) == ["noauth", ""]
        assert authstatus(a, "alice", new_token) == ["noauth", ""]
        assert authstatus(a, "alice", "old-pw") == ["ok", "alice"]


def test_deleted_user_is_refused_at_once_on_the_other_process(two_servers):
    """A user deleted through A cannot authenticate on B any more, not even for half a second."""
    a, b = two_servers
    _, token = a.create_user("bob", "pw")
    assert authstatus(b, "bob", "pw") == ["ok", "bob"]
    r = requests.delete(f"{a.url}/bob", auth=("root", "root"), timeout=30)
    assert r.status_code == 200, r.text
    assert authstatus(b, "bob", "pw") == ["noauth", ""]
    assert authstatus(b, "bob", token) == ["noauth", ""]
