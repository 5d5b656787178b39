"""The audit log: writes and failed logins, who/what/where/when, read by root (GET /+audit)."""
from __future__ import annotations

import base64
import time

import requests
from support.dists import write_sdist

THROTTLE_OFF = ("--login-rate", "1000/60", "--login-rate-user", "1000/60")


def entries(s, **params) -> list[dict]:
    r = s.api("GET", "/+audit", auth=s.login("root", "root"), params=params)
    assert r.status_code == 200, r.text
    return r.json()["result"]["entries"]


def find(log: list[dict], method: str, path: str, event: str = "write", user: str | None = None) -> dict:
    found = [e for e in log if e["method"] == method and e["path"] == path and e["event"] == event
             and (user is None or e["user"] == user)]
    assert found, f"no {event} {method} {path} in {log}"
    return found[-1]


def test_writes_and_failed_logins_are_recorded(make_server, storage_url, tmp_path):
    s = make_server(storage=storage_url, args=THROTTLE_OFF)
    t0 = time.time()
    assert s.api("PUT", "/alice", json={"password": "alice-pw"}).status_code == 201
    alice = s.login("alice", "alice-pw")
    s.create_index(alice, "dev")
    assert s.upload("alice/dev", write_sdist(tmp_path, "audited", "1.0"), ("alice", "alice-pw")).status_code == 200
    assert s.api("DELETE", "/alice/dev/audited/1.0", auth=alice).status_code == 200
    # failed logins: a wrong password through /+login from behind the (trusted, loopback) proxy,
    # a wrong Basic password on a read, a name no user can have
    r = s.api("POST", "/+login", json={"user": "alice", "password": "guess"},
              headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 401
    basic = base64.b64encode(b"alice:guess2").decode()
    assert requests.get(f"{s.url}/+api", headers={"Authorization": f"Basic {basic}"}, timeout=30).status_code == 200
    assert s.api("POST", "/+login", json={"user": "x" * 500, "password": "p"}).status_code == 401
    # a refused write is recorded with its status; an anonymous read is not recorded
    assert s.api("PUT", "/alice/other", json={}).status_code == 401
    assert s.api("GET", "/alice/dev").status_code == 200

    log = entries(s)
    created = find(log, "PUT", "/alice")
    assert created["user"] is None and created["status"] == 201 and created["client"] == "127.0.0.1"
    assert t0 - 1 <= created["timestamp"] <= time.time() + 1 and created["time"].endswith("Z")
    login = find(log, "POST", "/+login", user="alice")
    assert login["status"] == 200 and login["client"] == "127.0.0.1"
    assert find(log, "PUT", "/alice/dev")["user"] == "alice"
    upload = find(log, "POST", "/alice/dev/")
    assert upload["user"] == "alice" and upload["status"] == 200
    assert find(log, "DELETE", "/alice/dev/audited/1.0")["user"] == "alice"
    failed = find(log, "POST", "/+login", "auth-failure", user="alice")
    assert failed["user"] == "alice" and failed["status"] == 401 and failed["client"] == "203.0.113.7"
    basic_failed = find(log, "GET", "/+api", "auth-failure")
    assert basic_failed["user"] == "alice" and basic_failed["client"] == "127.0.0.1"
    assert any(e["event"] == "auth-failure" and e["user"] == "(invalid name)" for e in log)
    assert find(log, "PUT", "/alice/other")["status"] == 401
    assert not [e for e in log if e["method"] == "GET" and e["event"] == "write"]
    ids = [e["id"] for e in log]
    assert ids == sorted(ids)


def test_only_root_reads_the_audit_log(server):
    r = requests.get(f"{server.url}/+audit", timeout=30)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers and r.json()["message"]
    alice = server.create_user("alice", "alice-pw")
    r = server.api("GET", "/+audit", auth=alice)
    assert r.status_code == 403 and r.json()["message"]
    r = server.api("GET", "/+audit", auth=("root", "wrong"))
    assert r.status_code == 401
    root = server.login("root", "root")
    for bad in ({"since": "-1"}, {"limit": "x"}, {"since": "1e9"}, {"limit": "9" * 40}, {"since": "١"}):
        r = server.api("GET", "/+audit", auth=root, params=bad)
        assert r.status_code == 400 and r.json()["message"], bad
    # the failed attempts to read it are themselves in it
    log = server.api("GET", "/+audit", auth=root).json()["result"]["entries"]
    assert any(e["path"] == "/+audit" and e["event"] == "auth-failure" and e["user"] == "root" for e in log)


def test_the_audit_log_is_bounded_and_paged(make_server):
    s = make_server(args=("--audit-keep", "5", *THROTTLE_OFF))
    for i in range(130):  # failed logins of an impossible name: cheap, and each one recorded
        assert s.api("POST", "/+login", json={"user": f"bad name {i}", "password": "p"}).status_code == 401
    log = entries(s, limit="1000")
    # pruned every 100 rows to the newest 5: at most 5 + 99 remain, the newest among them
    assert 5 <= len(log) < 105
    newest = max(e["id"] for e in log)
    assert newest >= 130
    # the 100th row pruned to rows 96-100; the 30 after it (and root's login) are kept
    assert min(e["id"] for e in log) == 96
    # pages: ``next`` is the since of the following page
    first = s.api("GET", "/+audit", auth=s.login("root", "root"), params={"limit": "3"}).json()["result"]
    assert len(first["entries"]) == 3 and first["next"] == first["entries"][-1]["id"]
    second = entries(s, since=str(first["next"]), limit="3")
    assert second[0]["id"] > first["next"]
    r = s.api("GET", "/+audit", auth=s.login("root", "root"), params={"limit": "100000"})
    assert r.status_code == 200 and len(r.json()["result"]["entries"]) <= 1000
