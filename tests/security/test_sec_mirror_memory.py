"""Big upstream pages and project lists (issue 24, finding 8).

The attacker (or just a big upstream) sends huge project pages and a huge project list,
or asks for many different big pages. What must hold: the rendered page cache and each
mirror's in-memory pages stay within their byte budgets (``--page-cache-size``,
``--mirror-memory``; a page larger than a budget is served, not kept), a page with more
links than a page may have is refused, and a new mirror's project list is never answered
partially as if it were complete.
"""
from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import urljoin

import pytest
import requests
from support.hostile import HostileUpstream

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def hostile():
    """A small upstream answering fixed routes (support/hostile.py): yields (base URL, routes)."""
    with HostileUpstream("HTTP/1.1") as up:
        yield up.url, up.routes


def big_page(hostile, project: str, n: int) -> list[str]:
    """An upstream JSON page of ``project`` with n files (long names, like real wheels);
    every file is served too. Returns the file names."""
    base, routes = hostile
    files, names = [], []
    for i in range(n):
        fn = f"{project}-1.{i}-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        data = fn.encode()
        routes[f"/files/{fn}"] = (200, {}, data)
        files.append({"filename": fn, "url": f"/files/{fn}", "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                      "size": len(data), "requires-python": ">=3.8"})
        names.append(fn)
    doc = {"meta": {"api-version": "1.1"}, "name": project, "files": files}
    routes[f"/simple/{project}/"] = (200, {"Content-Type": JSON_TYPE}, json.dumps(doc).encode())
    return names


@pytest.fixture(scope="module")
def small(sec_servers):
    """A server with small budgets: 1 MB of rendered pages, 2 MB of mirror pages."""
    return sec_servers(args=("--page-cache-size", "1M", "--mirror-memory", "2M"))


def memory(server) -> dict:
    r = requests.get(f"{server.url}/+status", headers={"Accept": "application/json"}, timeout=30)
    return r.json()["result"]["memory"]


def test_pages_larger_than_the_budgets_are_served_not_kept(small, hostile):
    """A 6,000-file upstream page weighs several MB parsed and rendered, over both budgets.
    It must be served correctly every time (its files too), and neither cache may keep it:
    /+status shows both within budget and the page counted as not kept."""
    auth = small.login("root", "root")
    small.create_index(auth, "bigpages", type="mirror", mirror_url=hostile[0] + "/simple/")
    names = big_page(hostile, "hugeproj", 6000)
    url = f"{small.url}/root/bigpages/+simple/hugeproj/"
    for _ in range(2):
        r = requests.get(url, headers={"Accept": JSON_TYPE}, timeout=60)
        assert r.status_code == 200
        assert sorted(f["filename"] for f in r.json()["files"]) == sorted(names)
        html = requests.get(url, headers={"Accept": "text/html"}, timeout=60)
        assert html.status_code == 200 and names[-1] in html.text
    f = r.json()["files"][1234]
    got = requests.get(urljoin(url, f["url"]), timeout=60)
    assert got.status_code == 200 and got.content == f["filename"].encode()
    mem = memory(small)
    cache, mirror = mem["page_cache"], mem["mirrors"]["root/bigpages"]
    assert cache["not_kept"] >= 1 and cache["bytes"] <= cache["max_bytes"] == 1 << 20
    assert mirror["pages_not_kept"] >= 1 and mirror["bytes"] <= mirror["max_bytes"] == 2 << 20


def test_many_big_pages_keep_the_caches_within_budget(small, hostile):
    """Asking for many different big pages (each under the budgets) must evict older ones:
    the kept bytes stay within budget, and every page is still answered completely."""
    auth = small.login("root", "root")
    small.create_index(auth, "manypages", type="mirror", mirror_url=hostile[0] + "/simple/")
    for i in range(12):
        names = big_page(hostile, f"mid{i}", 600)
        r = requests.get(f"{small.url}/root/manypages/+simple/mid{i}/", headers={"Accept": JSON_TYPE}, timeout=60)
        assert r.status_code == 200 and len(r.json()["files"]) == len(names)
    mem = memory(small)
    cache, mirror = mem["page_cache"], mem["mirrors"]["root/manypages"]
    assert 0 < cache["bytes"] <= cache["max_bytes"]
    assert 0 < mirror["bytes"] <= mirror["max_bytes"] and mirror["pages"] < 12


def test_a_page_with_too_many_links_is_refused(sec_servers, hostile):
    """An upstream page with 250,000 links (more than a page may have) is refused with a
    502 naming the reason, not parsed into memory and served."""
    server = sec_servers()
    auth = server.login("root", "root")
    server.create_index(auth, "manylinks", type="mirror", mirror_url=hostile[0] + "/simple/")
    body = "".join(f'<a href="/f/x-{i}.tar.gz">x-{i}.tar.gz</a>\n' for i in range(250_000))
    hostile[1]["/simple/linkbomb/"] = (200, {"Content-Type": "text/html"}, f"<html><body>{body}</body></html>".encode())
    r = requests.get(f"{server.url}/root/manylinks/+simple/linkbomb/", timeout=120)
    assert r.status_code == 502, r.status_code
    assert "links" in r.json()["message"]


def _list_route(n: int, delay: float):
    doc = {"meta": {"api-version": "1.0"}, "projects": [{"name": f"Proj_{i:06d}"} for i in range(n)]}
    data = json.dumps(doc).encode()

    def body():
        time.sleep(delay)
        for i in range(0, len(data), 1 << 20):
            yield data[i:i + (1 << 20)]
    return (200, {"Content-Type": JSON_TYPE}, body)


def test_first_project_list_of_a_new_mirror_is_complete(sec_servers, hostile):
    """A new mirror's upstream lists 200,000 projects and takes 7 s to start answering (longer
    than --request-timeout, as a big index may). The first request for the mirror's list
    must get all 200,000 names, not the handful of pages seen so far."""
    server = sec_servers()
    auth = server.login("root", "root")
    base, routes = hostile
    routes["/biglist/"] = _list_route(200_000, 7.0)
    routes["/biglist/seen/"] = (200, {"Content-Type": JSON_TYPE},
                                json.dumps({"meta": {"api-version": "1.0"}, "name": "seen", "files": []}).encode())
    server.create_index(auth, "biglist", type="mirror", mirror_url=base + "/biglist/")
    assert requests.get(f"{server.url}/root/biglist/+simple/seen/", timeout=30).status_code == 200
    r = requests.get(f"{server.url}/root/biglist/+simple/", headers={"Accept": JSON_TYPE}, timeout=120)
    assert r.status_code == 200
    assert "X-Devpi-Incomplete" not in r.headers
    names = [p["name"] for p in r.json()["projects"]]
    assert len(names) == 200_000 and names[0] == "proj-000000" and names[-1] == "proj-199999"


def test_a_list_still_loading_is_marked_incomplete_and_not_cached(sec_servers, hostile):
    """The upstream list takes longer than a request may wait (20 s). The answer meanwhile
    lists what the mirror has seen and says it is incomplete (X-Devpi-Incomplete, no-store);
    once the list has arrived, the complete list is served."""
    server = sec_servers()
    auth = server.login("root", "root")
    base, routes = hostile
    routes["/slowlist/"] = _list_route(1000, 20.0)
    routes["/slowlist/seen/"] = (200, {"Content-Type": JSON_TYPE},
                                 json.dumps({"meta": {"api-version": "1.0"}, "name": "seen", "files": []}).encode())
    server.create_index(auth, "slowlist", type="mirror", mirror_url=base + "/slowlist/")
    assert requests.get(f"{server.url}/root/slowlist/+simple/seen/", timeout=30).status_code == 200
    r = requests.get(f"{server.url}/root/slowlist/+simple/", headers={"Accept": JSON_TYPE}, timeout=60)
    assert r.status_code == 200
    assert "X-Devpi-Incomplete" in r.headers and "no-store" in r.headers["Cache-Control"]
    assert [p["name"] for p in r.json()["projects"]] == ["seen"]
    deadline = time.monotonic() + 30
    while True:
        r = requests.get(f"{server.url}/root/slowlist/+simple/", headers={"Accept": JSON_TYPE}, timeout=60)
        if "X-Devpi-Incomplete" not in r.headers:
            break
        assert time.monotonic() < deadline, "the list never completed"
        time.sleep(1)
    assert len(r.json()["projects"]) == 1000


def peak_rss_kib(server) -> int:
    """The server's peak resident set (VmHWM): no later free() lowers it."""
    with open(f"/proc/{server.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_a_page_over_the_budget_is_parsed_once_for_concurrent_requests(small, hostile):
    """A page heavier than --mirror-memory is read back from SQL whenever a request needs it
    (each file download asks its page). Six clients fetching six of its files at once used to
    parse it six times over, side by side (~17 MB of objects each); they now share one parse:
    /+status counts one load (allowing a straggler), and the peak RSS barely moves."""
    import threading

    auth = small.login("root", "root")
    small.create_index(auth, "reparse", type="mirror", mirror_url=hostile[0] + "/simple/")
    names = big_page(hostile, "heavyproj", 12_000)
    url = f"{small.url}/root/reparse/+simple/heavyproj/"
    files = requests.get(url, headers={"Accept": JSON_TYPE}, timeout=60).json()["files"]
    assert len(files) == len(names) and memory(small)["mirrors"]["root/reparse"]["pages_not_kept"] >= 1
    before, loads_before = peak_rss_kib(small), memory(small)["mirrors"]["root/reparse"].get("pages_loaded", 0)
    chosen = files[100:106]
    barrier = threading.Barrier(len(chosen))
    got: dict[str, requests.Response] = {}

    def fetch(f: dict) -> None:
        barrier.wait()
        got[f["filename"]] = requests.get(urljoin(url, f["url"]), timeout=60)

    threads = [threading.Thread(target=fetch, args=(f,)) for f in chosen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in chosen:
        assert got[f["filename"]].status_code == 200 and got[f["filename"]].content == f["filename"].encode()
    grown_mib = (peak_rss_kib(small) - before) / 1024
    assert grown_mib < 30, f"peak RSS grew by {grown_mib:.0f} MiB"
    loads = memory(small)["mirrors"]["root/reparse"]["pages_loaded"] - loads_before
    assert 1 <= loads <= 2, loads
