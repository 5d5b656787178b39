"""Finding 12/13 (review): tox-result and test-run bodies are small and cheap to parse.

Tox results upload anonymously by default (``acl_toxresult_upload`` is
``:ANONYMOUS:``), and a body of 32 MiB was accepted; a body like
``[{},{},...]`` parses to about 25 bytes of Python objects per byte, so a few
concurrent ones took the server's memory past any bound. The attacker posts
such bodies to a release file's toxresult URL and to the live test-run
endpoints. Bodies over 2 MiB must be refused (413) from their declared length,
and bodies with more JSON items than a real report has must be refused (413)
before they are parsed, with the server's peak RSS staying where it was. A
realistic report (hundreds of KB of output) is still accepted.
"""
from __future__ import annotations

import time
import uuid

import pytest
import requests
from support.dists import write_sdist

MiB = 1024 * 1024


def object_bomb(size: int, **fields) -> bytes:
    """A JSON object of about ``size`` bytes whose "pad" is a list of empty objects."""
    head = b'{"pad":['
    for k, v in fields.items():
        head = f'{{"{k}":"{v}","pad":['.encode()
    count = (size - len(head)) // 3
    return head + b",".join([b"{}"] * count) + b"]}"


def peak_rss_kib(server) -> int:
    """The server process's peak resident set (VmHWM), which no later free() lowers."""
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def post(url: str, body: bytes) -> requests.Response:
    return requests.post(url, data=body, timeout=60,
                         headers={"Content-Type": "application/json", "Accept": "application/json"})


@pytest.fixture(scope="module")
def srv(sec_servers):
    return sec_servers()


@pytest.fixture(scope="module")
def release_href(srv, tmp_path_factory) -> str:
    owner = srv.create_user(f"tox{uuid.uuid4().hex[:8]}", "pw")
    srv.create_index(owner, "dev")
    sdist = write_sdist(tmp_path_factory.mktemp("dist"), "toxed", "1.0")
    assert srv.upload(f"{owner[0]}/dev", sdist, owner).status_code == 200
    return srv.api("GET", f"/{owner[0]}/dev/toxed").json()["result"]["1.0"]["+links"][0]["href"]


def realistic_report(output_bytes: int) -> dict:
    line = "tests/test_mod.py::test_case[param-1, 2] PASSED [ 42%], took 0.01s\n"
    output = line * (output_bytes // len(line))
    return {"reportversion": "1", "toxversion": "4.11", "platform": "linux", "host": "ci-7",
            "testenvs": {"py312": {"python": {"version_info": [3, 12, 1, "final", 0]},
                                   "installed_packages": [f"pkg{i}==1.{i}" for i in range(200)],
                                   "result": {"success": True},
                                   "test": [{"command": ["pytest", "-q"], "retcode": 0, "output": output}]}}}


def test_anonymous_object_bomb_toxresult_is_refused_before_parsing(srv, release_href):
    """Four anonymous 1.9 MiB ``[{},{},...]`` reports (each ~50 MB once parsed): 413 quickly,
    and the server's peak RSS grows by less than 25 MB over all of them."""
    bomb = object_bomb(int(1.9 * MiB))
    post(release_href, bomb[:1000].rsplit(b",", 1)[0] + b"]}")  # warm up the toxresult path
    before = peak_rss_kib(srv)
    for _ in range(4):
        t0 = time.monotonic()
        r = post(release_href, bomb)
        assert r.status_code == 413, r.text[:300]
        assert "items" in r.json()["message"]
        assert time.monotonic() - t0 < 5
    assert peak_rss_kib(srv) - before < 25 * 1024


def test_oversized_toxresult_is_refused_by_length(srv, release_href):
    """A 3 MiB report (a long output string, no bomb): 413 naming the 2 MiB limit."""
    body = b'{"reportversion":"1","testenvs":{},"pad":"' + b"x" * (3 * MiB) + b'"}'
    r = post(release_href, body)
    assert r.status_code == 413, r.text[:300]
    assert str(2 * MiB) in r.json()["message"]


def test_realistic_report_is_accepted(srv, release_href):
    """A 600 KB report with 200 installed packages and commas in its output still uploads."""
    r = requests.post(release_href, json=realistic_report(600_000), timeout=60)
    assert r.status_code == 200 and r.json()["type"] == "toxresultpath", r.text[:300]


def test_testrun_endpoints_refuse_bombs_and_oversized_reports(srv, release_href):
    """The live test-run API (open, events, finish) takes the same limits: an object bomb
    alongside valid events, and a 3 MiB report at finish, are 413; a real run still works."""
    index_url = release_href.split("/+f/")[0]
    r = srv.api("POST", "/" + index_url.split("/", 3)[3] + "/+testruns", json={"file": release_href})
    assert r.status_code == 201, r.text
    run = r.json()["result"]
    events_url, finish_url = f"{index_url}/+testruns/{run['id']}/events", f"{index_url}/+testruns/{run['id']}/finish"
    r = post(events_url, object_bomb(int(1.9 * MiB), key=run["key"]).replace(b'"pad"', b'"events":[],"pad"', 1))
    assert r.status_code == 413, r.text[:300]
    big = realistic_report(3 * MiB)
    r = requests.post(finish_url, json={"key": run["key"], "exitcode": 0, "toxresult": big}, timeout=60)
    assert r.status_code == 413, r.text[:300]
    r = requests.post(events_url, json={"key": run["key"], "events": [
        {"env": "py312", "nodeid": f"t.py::test_{i}", "outcome": "passed", "duration": 0.1} for i in range(400)]},
        timeout=60)
    assert r.status_code == 200, r.text[:300]
    r = requests.post(finish_url, json={"key": run["key"], "exitcode": 0, "toxresult": realistic_report(300_000)},
                      timeout=60)
    assert r.status_code == 200 and r.json()["result"]["status"] == "passed", r.text[:300]
