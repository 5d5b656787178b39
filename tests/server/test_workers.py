"""`devpi server --workers N`: several processes on one socket, one server dir, one database."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from support.dists import write_wheel
from support.server import DEAD_UPSTREAM
from support.upstream import Upstream
from support.waiting import wait_until
from support.workers import pinned_sessions, race, status, worker_pids

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}




@pytest.fixture
def workers_server(make_server, storage_url):
    return make_server(storage=storage_url, args=("--workers", "2"))


def test_requests_land_on_every_worker_and_an_upload_is_seen_by_the_other(workers_server, tmp_path):
    s = workers_server
    a, b = pinned_sessions(s.url)
    sa, sb = status(a, s.url), status(b, s.url)
    assert {sa["worker"], sb["worker"]} == {0, 1}
    assert sa["uuid"] == sb["uuid"]
    assert s.proc.pid not in (sa["pid"], sb["pid"])  # the parent serves nothing itself
    alice = s.create_user("alice", "pw")
    s.create_index(alice, "dev")
    assert b.get(f"{s.url}/alice/dev/+simple/pkg/", headers=JSON, timeout=10).status_code == 404
    wheel = write_wheel(tmp_path, "pkg", "1.0")
    r = a.post(f"{s.url}/alice/dev/", auth=alice, files={"content": (wheel.name, wheel.read_bytes())},
               data={":action": "file_upload", "name": "pkg", "version": "1.0"}, timeout=30)
    assert r.status_code == 200, r.text

    def page_on_b():
        r = b.get(f"{s.url}/alice/dev/+simple/pkg/", headers=JSON, timeout=10)
        return r.json() if r.status_code == 200 else None

    # one changelog poll (0.1 s) plus the request when the machine is quiet; the bound here is
    # only liveness (how fast is a benchmark's question, not a test's)
    page = wait_until(page_on_b, timeout=15)
    (entry,) = page["files"]
    data = b.get(f"{s.url}/alice/dev/+simple/pkg/{entry['url']}", timeout=10).content
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(wheel.read_bytes()).hexdigest()
    time.sleep(1.0)  # every worker's derived tables (search) have taken the upload in
    assert " ERROR " not in s.log_text() and "Traceback" not in s.log_text(), s.log_text()


def test_a_killed_worker_is_restarted(workers_server):
    s = workers_server
    before = worker_pids(s.url)
    os.kill(before[1], signal.SIGKILL)

    def replaced():
        try:
            pids = worker_pids(s.url)
        except AssertionError:  # the other one answers alone meanwhile
            return None
        return pids if pids[1] != before[1] else None

    after = wait_until(replaced, timeout=30)
    assert after[0] == before[0]
    assert f"worker 1 (pid {before[1]}) exited with -9: restarting it" in s.log_text()


def pinned_statuses(url: str) -> list[tuple[int, int]]:
    """(pid, worker number) of two different worker processes."""
    sessions = pinned_sessions(url)
    try:
        return [(st["pid"], st["worker"]) for st in (status(x, url) for x in sessions)]
    finally:
        for x in sessions:
            x.close()


def test_sighup_replaces_every_worker_one_at_a_time(workers_server):
    """Each replacement is up before its predecessor stops: the server answers throughout (a
    request on a connection the stopping worker had just accepted may need one retry)."""
    s = workers_server
    before = set(worker_pids(s.url).values())
    s.proc.send_signal(signal.SIGHUP)
    failures = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for attempt in (1, 2):
            try:
                assert requests.get(f"{s.url}/+api", timeout=10).status_code == 200
                break
            except requests.ConnectionError as e:
                if attempt == 2:
                    failures.append(repr(e))
        try:
            seen = {w: pid for pid, w in pinned_statuses(s.url)}
        except requests.ConnectionError:  # a pinned worker stopped just then
            continue
        if sorted(seen) == [0, 1] and not set(seen.values()) & before:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"workers not replaced: {before}")
    assert not failures
    assert "SIGHUP: restarting the workers one at a time" in s.log_text()


def test_sigterm_stops_the_parent_and_every_worker_within_5_seconds(workers_server):
    s = workers_server
    pids = list(worker_pids(s.url).values())
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait_exit(5) == 0
    assert time.monotonic() - t0 < 5
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived its parent"


def test_a_second_server_on_the_same_sqlite_dir_is_refused(make_server):
    s = make_server(args=("--workers", "2"))
    worker_pids(s.url)
    for extra in ((), ("--workers", "2")):
        p = subprocess.run([sys.executable, "-m", "devpi.server", "--port", "0", "--mirror-url", DEAD_UPSTREAM,
                            "--serverdir", str(s.serverdir), *extra], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0
        lines = p.stderr.strip().splitlines()
        assert lines == [f"devpi server: another server (pid {s.proc.pid}) is already running on {s.serverdir}"]
    assert len(worker_pids(s.url)) == 2  # unharmed


def _assert_one_fetch_each(up: Upstream, clients: list[tuple[requests.Session, str]]):
    """Two processes ask at once for a cold page, then for a cold file: upstream sees one of each."""
    f = up.add_wheel("race-pkg", "1.0", extra_files={"race_pkg/data.bin": os.urandom(400_000)})
    up.delays["race-pkg"] = 1.5  # the page: both requests arrive while the first fetch runs
    pages = race([lambda c=c: c[0].get(f"{c[1]}/root/pypi/+simple/race-pkg/", headers=JSON, timeout=60)
                   for c in clients])
    assert [r.status_code for r in pages] == [200, 200], [r.text for r in pages]
    assert up.count("/simple/race-pkg/") == 1
    up.delays.clear()
    up.chunk_delay = 0.25  # the file: seven chunks, about two seconds
    [link] = pages[0].json()["files"]
    files = race([lambda c=c: c[0].get(f"{c[1]}/root/pypi/+simple/race-pkg/{link['url']}", timeout=60)
                   for c in clients])
    up.chunk_delay = 0.0
    for r in files:
        assert r.status_code == 200, r.text
        assert hashlib.sha256(r.content).hexdigest() == f.sha256
    assert up.downloads(f.filename) == 1


def test_two_workers_fetch_a_cold_page_and_file_from_upstream_once(make_server, storage_url):
    with Upstream() as up:
        s = make_server(storage=storage_url, mirror_url=up.url, args=("--workers", "2"))
        a, b = pinned_sessions(s.url)
        _assert_one_fetch_each(up, [(a, s.url), (b, s.url)])


def test_two_servers_on_one_postgresql_database_fetch_from_upstream_once(make_server, pg_cluster, tmp_path):
    with Upstream() as up:
        url = pg_cluster.new_database()
        shared = tmp_path / "shared-serverdir"
        a = make_server(serverdir=shared, storage=url, mirror_url=up.url)
        b = make_server(serverdir=shared, storage=url, mirror_url=up.url)
        _assert_one_fetch_each(up, [(requests.Session(), a.url), (requests.Session(), b.url)])
