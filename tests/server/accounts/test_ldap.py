"""Users and groups from a real LDAP directory (``--ldap-config``), against a real slapd.

The directory (tests/support/slapd.py): alice in team-a, bob in team-b, carol in no group.
Read enforcement of ``acl_read`` is not on this branch: groups are shown through upload and
modify rights, and through the groups ``/+api`` reports for the user.
"""
from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from srv_helpers import twine_upload
from support.dists import write_sdist

CACHE_TTL = 2.0
THROTTLE_OFF = ("--login-rate", "1000/60", "--login-rate-user", "1000/60")


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def ldap_server(slapd, make_server, tmp_path):
    cfg = write_config(tmp_path / "ldap.yaml", slapd.config(cache_ttl=CACHE_TTL))
    return make_server(args=("--ldap-config", str(cfg), *THROTTLE_OFF))


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def authstatus(s, user: str, password: str) -> requests.Response:
    return requests.get(f"{s.url}/+api", headers={"Accept": "application/json", **basic(user, password)},
                        timeout=30)


def devpi_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "devpi"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "devpi.client"]
    env = {**os.environ, "DEVPI_CLIENTDIR": str(tmp_path / "clientdir")}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)


def owner_index(s, **config) -> str:
    """root makes the user ``owner`` with ``owner/dev``: an index directory users get rights on."""
    root = s.login("root", "root")
    assert s.api("PUT", "/owner", json={"password": "owner-pw"}, auth=root).status_code == 201
    assert s.api("PUT", "/owner/dev", json={"volatile": True, **config}, auth=root).status_code == 200
    return "owner/dev"


def test_directory_user_logs_in_with_the_cli_and_basic_auth(ldap_server, tmp_path):
    s = ldap_server
    assert devpi_cli(tmp_path, "use", s.url).returncode == 0
    r = devpi_cli(tmp_path, "login", "alice", "--password", "alice-pw")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "alice" in r.stdout
    # the token /+login gave works for a user with no local row, groups included
    token = s.login("alice", "alice-pw")
    r = s.api("GET", "/+api", auth=token)
    assert r.json()["result"]["authstatus"] == ["ok", "alice", ["team-a"]]
    # Basic auth (what pip, uv and twine send)
    assert authstatus(s, "alice", "alice-pw").json()["result"]["authstatus"] == ["ok", "alice", ["team-a"]]
    assert authstatus(s, "carol", "carol-pw").json()["result"]["authstatus"] == ["ok", "carol", []]
    assert authstatus(s, "alice", "bob-pw").json()["result"]["authstatus"][0] == "noauth"
    wrong = s.api("POST", "/+login", json={"user": "alice", "password": "bob-pw"})
    assert wrong.status_code == 401 and wrong.json()["message"]
    r = devpi_cli(tmp_path, "login", "alice", "--password", "nope")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_local_users_keep_working_beside_the_directory(ldap_server):
    s = ldap_server
    # a name the directory does not know: the local row decides, as without LDAP
    s.create_user("dave", "dave-pw")
    assert authstatus(s, "dave", "dave-pw").json()["result"]["authstatus"] == ["ok", "dave", []]
    assert authstatus(s, "dave", "wrong").json()["result"]["authstatus"][0] == "noauth"
    # root is always local
    assert authstatus(s, "root", "root").json()["result"]["authstatus"][:2] == ["ok", "root"]


def test_a_local_row_never_shadows_a_directory_user(ldap_server):
    """Anyone may create the user row "bob" (open user creation): its password must not log in
    as the directory's bob."""
    s = ldap_server
    r = s.api("PUT", "/bob", json={"password": "attacker-pw"})
    assert r.status_code == 201
    assert authstatus(s, "bob", "attacker-pw").json()["result"]["authstatus"][0] == "noauth"
    assert s.api("POST", "/+login", json={"user": "bob", "password": "attacker-pw"}).status_code == 401
    assert authstatus(s, "bob", "bob-pw").json()["result"]["authstatus"] == ["ok", "bob", ["team-b"]]


def test_a_group_grants_upload_with_twine(ldap_server, tmp_path):
    s = ldap_server
    index = owner_index(s, acl_upload=[":team-a"])
    sdist = write_sdist(tmp_path, "ldap-pkg", "1.0")
    r = twine_upload(s, index, "alice", "alice-pw", [sdist])
    assert r.returncode == 0, r.stdout + r.stderr
    listed = s.api("GET", f"/{index}/ldap-pkg").json()["result"]
    assert "1.0" in listed
    other = write_sdist(tmp_path, "ldap-pkg", "1.1")
    r = twine_upload(s, index, "bob", "bob-pw", [other])  # team-b
    assert r.returncode != 0 and "403" in r.stdout + r.stderr
    assert "1.1" not in s.api("GET", f"/{index}/ldap-pkg").json()["result"]


def test_a_group_grants_read_and_losing_it_takes_read_away(ldap_server, slapd, tmp_path):
    """acl_read=:team-a: alice (team-a) reads the index with Basic auth, bob (team-b) gets 403,
    anonymous 401; removing alice from team-a takes read away within the cache lifetime."""
    s = ldap_server
    index = owner_index(s, acl_read=[":team-a"])
    owner = ("owner", "owner-pw")  # the local user owning the index (acl_upload's default)
    assert s.upload(index, write_sdist(tmp_path, "grp-secret-pkg", "1.0"), owner).status_code == 200
    page = f"{s.url}/{index}/+simple/grp-secret-pkg/"
    assert requests.get(page, headers=basic("alice", "alice-pw"), timeout=30).status_code == 200
    refused = requests.get(page, headers=basic("bob", "bob-pw"), timeout=30)
    assert refused.status_code == 403 and "grp-secret-pkg-1.0" not in refused.text
    assert requests.get(page, timeout=30).status_code == 401
    slapd.remove_member("team-a", "alice")
    try:
        deadline = time.monotonic() + CACHE_TTL + 5  # the lifetime, and slack for a loaded machine
        while (r := requests.get(page, headers=basic("alice", "alice-pw"), timeout=30)).status_code == 200:
            assert time.monotonic() < deadline, "the removed membership still granted read"
            time.sleep(0.2)
        assert r.status_code == 403 and "grp-secret-pkg-1.0" not in r.text
    finally:
        slapd.add_member("team-a", "alice")


def test_a_group_in_restrict_modify(slapd, make_server, tmp_path):
    cfg = write_config(tmp_path / "ldap.yaml", slapd.config(cache_ttl=CACHE_TTL))
    s = make_server(args=("--ldap-config", str(cfg), "--restrict-modify", ":team-a", *THROTTLE_OFF))
    r = s.api("PUT", "/newuser", json={"password": "x-pw"}, headers=basic("alice", "alice-pw"))
    assert r.status_code == 201, r.text
    r = s.api("PUT", "/other", json={"password": "x-pw"}, headers=basic("bob", "bob-pw"))
    assert r.status_code == 403, r.text


def test_removed_membership_takes_effect_within_the_cache_lifetime(ldap_server, slapd, tmp_path):
    s = ldap_server
    index = owner_index(s, acl_upload=[":team-a"])
    token = s.login("alice", "alice-pw")  # a token: its groups come from the groups look-up
    assert s.api("GET", "/+api", auth=token).json()["result"]["authstatus"][2] == ["team-a"]
    assert s.upload(index, write_sdist(tmp_path, "member-pkg", "1.0"), ("alice", "alice-pw")).status_code == 200
    slapd.remove_member("team-a", "alice")
    try:
        removed_at = time.monotonic()
        deadline = removed_at + CACHE_TTL + 5  # the lifetime, and slack for a loaded machine
        n = 1
        while True:
            n += 1
            r = s.upload(index, write_sdist(tmp_path, "member-pkg", f"1.{n}"), ("alice", "alice-pw"))
            if r.status_code == 403:
                break
            assert r.status_code == 200, r.text
            assert time.monotonic() < deadline, "the removed membership still granted upload"
            time.sleep(0.2)
        groups = s.api("GET", "/+api", auth=token).json()["result"]["authstatus"][2]
        assert groups == []
    finally:
        slapd.add_member("team-a", "alice")


def test_directory_down_fails_closed_and_anonymous_reads_go_on(ldap_server, slapd, tmp_path):
    s = ldap_server
    index = owner_index(s)
    token = s.login("alice", "alice-pw")
    slapd.stop()
    try:
        time.sleep(CACHE_TTL + 0.5)  # what was verified before the outage has expired
        r = s.api("POST", "/+login", json={"user": "alice", "password": "alice-pw"})
        assert r.status_code == 503, r.text
        assert "directory" in r.json()["message"]
        r = authstatus(s, "carol", "carol-pw")
        assert r.status_code == 503 and r.headers["Content-Type"] == "application/json"
        # a token's groups need the directory too
        assert s.api("GET", "/+api", auth=token).status_code == 503
        r = devpi_cli(tmp_path, "use", s.url)
        r = devpi_cli(tmp_path, "login", "alice", "--password", "alice-pw")
        assert r.returncode != 0 and "Traceback" not in r.stderr and "503" in r.stdout + r.stderr
        # anonymous reads are served; root (local) still works
        assert s.api("GET", f"/{index}").status_code == 200
        assert s.api("GET", f"/{index}/+simple/").status_code == 200
        assert s.api("GET", "/+api").json()["result"]["authstatus"][0] == "noauth"
        assert authstatus(s, "root", "root").status_code == 200
        # a 503 is not a wrong password: it does not count towards the login throttle
        assert "too many" not in r.stdout
    finally:
        slapd.start()
    assert authstatus(s, "alice", "alice-pw").status_code == 200
