"""The start-up lane: pages answered from the last run's snapshot before the application is up.

While a restarted server assembles its application, it answers kept simple pages of public
indexes (http/startup_lane.py). An attacker tries to get more out of that window than an
anonymous reader gets from the running server: a private index's page, an answer that skips
credential checks, another resource through a path or method trick, or a page after the
data changed. What must hold: only a GET/HEAD without credentials, for exactly a kept path,
is answered early, and only with the bytes the application would give; everything else waits
for the application and is then judged by it (401 for bad credentials, a redirect for an
unnormalised name).
"""
from __future__ import annotations

import requests
from support.dists import write_wheel
from support.startup import Gate, GatedStart, first_answer, pending, snapshot_head


def test_only_plain_anonymous_reads_of_kept_pages_are_answered_early(sec_servers, tmp_path):
    gate = Gate(tmp_path / "gate")
    s = sec_servers(env=gate.env)
    alice = s.create_user("alice", "pw")
    s.create_index(alice, "dev", bases=[])
    s.create_index(alice, "secret", bases=[], acl_read=["alice"])
    for index in ("alice/dev", "alice/secret"):  # (an upload drops the project's pages everywhere)
        assert s.upload(index, write_wheel(tmp_path, "kept-proj", "1.0"), ("alice", "pw")).status_code == 200
    for index in ("alice/dev", "alice/secret"):
        for path in (f"/{index}/+simple/", f"/{index}/+simple/kept-proj/"):
            assert requests.get(s.url + path, auth=("alice", "pw"), timeout=30).status_code == 200
    assert s.stop() == 0
    assert {p[0][1] for p in snapshot_head(s)["pages"]} == {"dev"}  # the private index's pages: never kept

    page = "/alice/dev/+simple/kept-proj/"
    start = GatedStart(s, gate)
    try:
        assert first_answer(s.url + page).status_code == 200
        assert requests.head(s.url + page, timeout=30).status_code == 200
        tricks = [
            ("GET", page, {"Authorization": "Basic YWxpY2U6d3Jvbmc="}),  # alice:wrong
            ("GET", page, {"X-Devpi-Auth": "Z2FyYmFnZQ=="}),
            ("GET", page, {"Cookie": "session=forged"}),
            ("POST", page, {}),
            ("DELETE", page, {}),
            ("GET", "/alice/dev/+simple/Kept_Proj/", {}),  # unnormalised: the application redirects
            ("GET", "/alice/dev/+simple/kept-proj/%2e%2e/", {}),  # (requests would resolve a plain ..)
            ("GET", "/alice/dev/+simple/kept-proj", {}),
            ("GET", "/alice/secret/+simple/kept-proj/", {}),
            ("GET", "/alice/secret/+simple/", {}),
        ]
        for method, path, headers in tricks:
            assert pending(s.url + path, method=method, headers=headers), (method, path, headers)
    finally:
        start.finish()
    # then the application judges them as always
    r = requests.get(s.url + "/alice/dev/+simple/Kept_Proj/", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"].endswith("/alice/dev/+simple/kept-proj/")
