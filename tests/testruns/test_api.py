"""The test-run HTTP API directly: permissions, the run key, lifecycle rules, classic toxresults."""
from __future__ import annotations

import time

import requests
from support.dists import write_sdist

REPORT = {"reportversion": "1", "platform": "linux", "host": "h",
          "testenvs": {"py": {"python": {"version_info": [3, 12, 1]}, "result": {"success": True},
                              "test": [{"command": ["pytest"], "retcode": 0, "output": ""}]}}}


def setup_release(server, tmp_path, **index_config):
    auth = server.create_user("alice", "secret")
    server.create_index(auth, "dev", **index_config)
    r = server.upload("alice/dev", write_sdist(tmp_path, "apipkg", "1.0"), auth)
    assert r.status_code == 200, r.text
    links = server.api("GET", "/alice/dev/apipkg").json()["result"]["1.0"]["+links"]
    return auth, links[0]["href"]


def open_run(server, href, auth=None, **kw):
    return server.api("POST", "/alice/dev/+testruns", json={"file": href, "host": "h", "platform": "linux",
                                                            "python": "3.12.1 (main)", **kw}, auth=auth)


def test_upload_acl_key_and_lifecycle(any_server, tmp_path):
    server = any_server  # SQLite and PostgreSQL
    auth, href = setup_release(server, tmp_path, acl_toxresult_upload=["alice"])
    r = open_run(server, href)
    assert r.status_code == 403 and "No permission to upload tox results" in r.json()["message"]
    r = open_run(server, href, auth=auth)
    assert r.status_code == 201, r.text
    run = r.json()["result"]
    assert run["status"] == "running" and run["who"] == "alice" and run["python"] == "3.12.1"

    events = f"/alice/dev/+testruns/{run['id']}/events"
    r = server.api("POST", events, json={"key": "guess", "events": []})
    assert r.status_code == 403
    r = server.api("POST", events, json={"key": run["key"], "events": [
        {"env": "py", "nodeid": "t.py::a", "outcome": "passed", "duration": 0.1, "python": "3.12.1"}]})
    assert r.status_code == 200 and r.json()["result"]["events"] == 1

    finish = f"/alice/dev/+testruns/{run['id']}/finish"
    r = server.api("POST", finish, json={"key": run["key"], "exitcode": 0, "toxresult": REPORT})
    assert r.status_code == 200, r.text
    done = r.json()["result"]
    assert done["status"] == "passed" and done["envs"]["py"] == {"python": "3.12.1", "status": "passed"}
    assert requests.get(done["toxresult"], timeout=30).json()["testenvs"]["py"]["result"]["success"] is True
    assert server.api("POST", finish, json={"key": run["key"], "exitcode": 0}).status_code == 409
    assert server.api("POST", events, json={"key": run["key"], "events": []}).status_code == 409

    # the key is never shown to readers
    shown = server.api("GET", f"/alice/dev/+testruns/{run['id']}").json()["result"]
    assert "key" not in shown and shown["events"][0]["nodeid"] == "t.py::a"
    by_file = server.api("GET", "/alice/dev/+testruns", params={"file": href}).json()["result"]
    assert [r["id"] for r in by_file] == [run["id"]]

    # push copies the run, its events and its report along with the file
    server.create_index(auth, "prod")
    r = server.api("PUSH", "/alice/dev", json={"name": "apipkg", "version": "1.0", "targetindex": "alice/prod"},
                   auth=auth)
    assert r.status_code == 200, r.text
    [copied] = server.api("GET", "/alice/prod/apipkg/1.0/+testruns?events").json()["result"]
    assert copied["file"] == href.replace("/alice/dev/", "/alice/prod/")
    assert copied["status"] == "passed" and copied["id"] != run["id"]
    assert [e["nodeid"] for e in copied["events"]] == ["t.py::a"]
    assert copied["toxresult"].startswith(server.url + "/alice/prod/")


def test_silent_run_reads_interrupted_and_a_sign_of_life_revives_it(server, tmp_path):
    _, href = setup_release(server, tmp_path)
    run = open_run(server, href, timeout=1).json()["result"]
    time.sleep(1.5)
    assert server.api("GET", f"/alice/dev/+testruns/{run['id']}").json()["result"]["status"] == "interrupted"
    r = server.api("POST", f"/alice/dev/+testruns/{run['id']}/events", json={"key": run["key"], "events": []})
    assert r.status_code == 200
    assert server.api("GET", f"/alice/dev/+testruns/{run['id']}").json()["result"]["status"] == "running"
    # a run without a report never passes, whatever exit code is claimed
    r = server.api("POST", f"/alice/dev/+testruns/{run['id']}/finish", json={"key": run["key"], "exitcode": 0})
    assert r.json()["result"]["status"] == "error"


def test_classic_toxresult_upload_still_works(server, tmp_path):
    auth, href = setup_release(server, tmp_path)
    # by the index owner: an anonymous report is stored too, but counts for no push gate
    # (tests/security/test_sec_toxresult_trust.py)
    r = server.api("POST", href[len(server.url):], json=REPORT, auth=auth)
    assert r.status_code == 200 and r.json()["type"] == "toxresultpath", r.text
    links = server.api("GET", "/alice/dev/apipkg").json()["result"]["1.0"]["+links"]
    [tox] = [lk for lk in links if lk["rel"] == "toxresult"]
    assert tox["for_href"] == href
    # and it counts for push_requires like a finished run's report
    server.api("PATCH", "/alice/dev", json=["push_requires+=py312"], auth=server.login("alice", "secret"))
    auth = server.login("alice", "secret")
    server.create_index(auth, "prod")
    r = server.api("PUSH", "/alice/dev", json={"name": "apipkg", "version": "1.0", "targetindex": "alice/prod"},
                   auth=auth)
    assert r.status_code == 200, r.text


def test_unknown_file_and_run(server, tmp_path):
    setup_release(server, tmp_path)
    r = open_run(server, "+f/000/0000000000000/nope-1.0.tar.gz")
    assert r.status_code == 404 and "no release file" in r.json()["message"]
    assert server.api("GET", "/alice/dev/+testruns/999").status_code == 404
    assert server.api("GET", "/alice/dev/+testruns").status_code == 400


def test_reports_nobody_can_read_neither_fail_pushes_nor_pass_gates(server, tmp_path):
    """Anyone in acl_toxresult_upload may send any JSON: what is not a tox report (or says
    "false" for success) counts for nothing, and a push that checks reports gets a 409."""
    auth, href = setup_release(server, tmp_path, push_requires=["linux"])
    server.create_index(auth, "prod")
    for report in ({"platform": "linux", "testenvs": [1, 2]},
                   {"platform": "linux", "testenvs": {"py": {"python": "3.12"}}},
                   {"platform": "linux", "testenvs": {"py": {"result": {"success": "false"}}}},
                   {"platform": "linux", "testenvs": {"py": {"test": "x"}}},
                   {"platform": "linux", "testenvs": {"py": {"test": [], "setup": [{"retcode": 0}]}}}):
        r = requests.post(href, json=report, headers={"Accept": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
        r = server.api("PUSH", "/alice/dev", json={"name": "apipkg", "version": "1.0", "targetindex": "alice/prod"},
                       auth=auth)
        assert r.status_code == 409 and "push_requires needs a passing test run" in r.json()["message"], r.text
    # the same shapes as a finished run's report: stored nowhere, the run is no pass
    run = open_run(server, href, auth=auth).json()["result"]
    r = server.api("POST", f"/alice/dev/+testruns/{run['id']}/finish",
                   json={"key": run["key"], "exitcode": 0, "toxresult": {"testenvs": [1]}})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["status"] == "failed"


def test_an_interrupted_run_counts_for_nothing(server, tmp_path):
    auth, href = setup_release(server, tmp_path, push_requires=["linux"])
    server.create_index(auth, "prod")
    run = open_run(server, href, auth=auth).json()["result"]
    r = server.api("POST", f"/alice/dev/+testruns/{run['id']}/finish",
                   json={"key": run["key"], "exitcode": None, "interrupted": True, "toxresult": REPORT})
    assert r.status_code == 200 and r.json()["result"]["status"] == "interrupted", r.text
    links = server.api("GET", "/alice/dev/apipkg").json()["result"]["1.0"]["+links"]
    assert [lk for lk in links if lk["rel"] == "toxresult"] == []
    r = server.api("PUSH", "/alice/dev", json={"name": "apipkg", "version": "1.0", "targetindex": "alice/prod"},
                   auth=auth)
    assert r.status_code == 409, r.text


def test_toxresult_names_stay_unique_after_a_delete(server, tmp_path):
    auth, href = setup_release(server, tmp_path)
    paths = []
    for _ in range(2):
        r = requests.post(href, json=REPORT, headers={"Accept": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
        paths.append(r.json()["result"].split("#")[0])
    assert server.api("DELETE", "/" + paths[0], auth=auth).status_code == 200
    r = requests.post(href, json=REPORT, headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text  # a second of the same stamp must not take the name still in use
    assert r.json()["result"].split("#")[0] not in paths[1:]
    links = server.api("GET", "/alice/dev/apipkg").json()["result"]["1.0"]["+links"]
    assert len([lk for lk in links if lk["rel"] == "toxresult"]) == 2


def test_numbers_and_text_that_json_can_spell_but_not_hold(server, tmp_path):
    auth, href = setup_release(server, tmp_path)
    for timeout in ("nan", "inf", "-inf"):
        r = open_run(server, href, auth=auth, timeout=timeout)
        assert r.status_code == 400 and "timeout" in r.json()["message"], r.text
    run = open_run(server, href, auth=auth).json()["result"]
    events = f"/alice/dev/+testruns/{run['id']}/events"
    for body in (b'{"key": "%s", "events": [{"env": "py", "nodeid": "\\udc00", "outcome": "passed"}]}',
                 b'{"key": "%s", "events": [{"env": "py", "nodeid": "a", "longrepr": "x\\ud800y"}]}',
                 b'{"key": "%s", "events": [{"env": "py", "nodeid": "a", "duration": 1e400}]}'):
        r = server.api("POST", events, data=body % run["key"].encode(), headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
    r = requests.post(href, data=b'{"platform": "\\ud800", "testenvs": {}}', timeout=30,
                      headers={"Content-Type": "application/json", "Accept": "application/json"})
    assert r.status_code == 400 and "surrogate" in r.json()["message"]
    # a pair of surrogates is one character, and welcome
    r = server.api("POST", events, data=b'{"key": "%s", "events": [{"env": "py", "nodeid": "\\ud83d\\ude00"}]}'
                   % run["key"].encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    shown = server.api("GET", f"/alice/dev/+testruns/{run['id']}").json()["result"]
    assert shown["events"][0]["nodeid"] == "\U0001f600"
    page = requests.get(f"{server.url}/alice/dev/apipkg/1.0", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200
