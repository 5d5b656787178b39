"""Finding 20 (a, b): credentials that outlive or dodge the rules.

(a) A password beginning with ``devpi~`` (the login-token prefix) used to be
accepted and then could never log in, since every check treated it as a token:
it must be refused when set. (b) A test-run key is a bearer credential handed
out under ``acl_toxresult_upload``; an attacker who opened a run while the ACL
allowed them must not keep reporting results after the owner narrowed it.
"""
from __future__ import annotations

import requests
from support.dists import write_sdist


def test_a_password_with_the_token_prefix_is_refused_when_set(sec_servers):
    """Creating a user or changing a password to ``devpi~...`` answers 400 and changes
    nothing; the old password keeps working."""
    server = sec_servers()
    r = server.api("PUT", "/carol", json={"password": "devpi~carol~1~x"})
    assert r.status_code == 400 and "devpi~" in r.json()["message"], r.text
    assert server.api("GET", "/carol").status_code == 404
    alice = server.create_user("alice", "first")
    r = server.api("PATCH", "/alice", json={"password": "devpi~pw"}, auth=alice)
    assert r.status_code == 400 and "devpi~" in r.json()["message"], r.text
    assert requests.post(f"{server.url}/+login", json={"user": "alice", "password": "first"},
                         timeout=30).status_code == 200
    # a password that merely contains the prefix later on is fine
    assert server.api("PATCH", "/alice", json={"password": "x-devpi~y"}, auth=alice).status_code == 200
    assert requests.post(f"{server.url}/+login", json={"user": "alice", "password": "x-devpi~y"},
                         timeout=30).status_code == 200


def _open_run(server, href, auth=None):
    return server.api("POST", "/alice/dev/+testruns", json={"file": href, "host": "h", "platform": "linux",
                                                            "python": "3.12.1"}, auth=auth)


def test_narrowing_acl_toxresult_upload_revokes_open_test_run_keys(sec_servers, tmp_path):
    """mallory opens a run while the index takes results from anyone; alice then narrows
    ``acl_toxresult_upload`` to herself: mallory's key can no longer add events or finish the
    run (403), while alice's own run goes on."""
    server = sec_servers()
    alice = server.create_user("alice", "secret")
    mallory = server.create_user("mallory", "pw")
    server.create_index(alice, "dev", acl_toxresult_upload=[":ANONYMOUS:"])
    r = server.upload("alice/dev", write_sdist(tmp_path, "runpkg", "1.0"), alice)
    assert r.status_code == 200, r.text
    href = server.api("GET", "/alice/dev/runpkg").json()["result"]["1.0"]["+links"][0]["href"]
    anonymous_run = _open_run(server, href).json()["result"]
    mallory_run = _open_run(server, href, auth=mallory).json()["result"]
    alice_run = _open_run(server, href, auth=alice).json()["result"]
    for run in (anonymous_run, mallory_run, alice_run):
        r = server.api("POST", f"/alice/dev/+testruns/{run['id']}/events",
                       json={"key": run["key"], "events": [{"env": "py", "nodeid": "t::a", "outcome": "passed"}]})
        assert r.status_code == 200, r.text
    r = server.api("PATCH", "/alice/dev", json={"acl_toxresult_upload": ["alice"]}, auth=alice)
    assert r.status_code == 200, r.text
    for run in (anonymous_run, mallory_run):
        r = server.api("POST", f"/alice/dev/+testruns/{run['id']}/events",
                       json={"key": run["key"], "events": [{"env": "py", "nodeid": "t::b", "outcome": "passed"}]})
        assert r.status_code == 403 and "acl_toxresult_upload" in r.json()["message"], r.text
        r = server.api("POST", f"/alice/dev/+testruns/{run['id']}/finish", json={"key": run["key"], "exitcode": 0})
        assert r.status_code == 403, r.text
        shown = server.api("GET", f"/alice/dev/+testruns/{run['id']}").json()["result"]
        assert [e["nodeid"] for e in shown["events"]] == ["t::a"] and shown["status"] == "running"
    r = server.api("POST", f"/alice/dev/+testruns/{alice_run['id']}/finish",
                   json={"key": alice_run["key"], "exitcode": 0})
    assert r.status_code == 200, r.text
