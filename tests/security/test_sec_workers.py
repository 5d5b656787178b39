"""Attacks on `devpi server --workers N` and the fetch locks shared by its processes."""
from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from devpi.server.store.flight_locks import SLOTS
from support.server import DEAD_UPSTREAM
from support.upstream import Upstream
from support.workers import pinned_sessions

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def authstatus(session: requests.Session, url: str, user: str, secret: str) -> list[str]:
    header = base64.b64encode(f"{user}:{secret}".encode()).decode()
    r = session.get(f"{url}/+api", headers={"X-Devpi-Auth": header, "Accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["result"]["authstatus"][:2]


def run_server(*args: str, env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()):
    return subprocess.run([sys.executable, "-m", "devpi.server", "--port", "0", "--mirror-url", DEAD_UPSTREAM,
                           *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
                          pass_fds=pass_fds)


def assert_one_line(p: subprocess.CompletedProcess, text: str) -> None:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if text in line]
    assert lines and lines[0].startswith("devpi server: "), p.stderr


def test_password_change_through_one_sqlite_worker_revokes_old_credentials_on_the_other(make_server):
    """Workers on one SQLite file read credentials live, as processes on PostgreSQL do: an old
    password or token must not work on the other worker until its poller catches up."""
    s = make_server(args=("--workers", "2"))
    a, b = pinned_sessions(s.url)
    _, old_token = s.create_user("alice", "old-pw")
    for _ in range(3):  # warm B's caches: verified password, stored hash
        assert authstatus(b, s.url, "alice", "old-pw") == ["ok", "alice"]
        assert authstatus(b, s.url, "alice", old_token) == ["ok", "alice"]
    r = a.patch(f"{s.url}/alice", json={"password": "new-pw"}, auth=("alice", "old-pw"), timeout=30)
    assert r.status_code == 200, r.text
    new_token = r.json()["result"]["password"]
    assert authstatus(b, s.url, "alice", "old-pw") == ["noauth", ""]
    assert authstatus(b, s.url, "alice", old_token) == ["noauth", ""]
    assert authstatus(b, s.url, "alice", "new-pw") == ["ok", "alice"]
    assert authstatus(b, s.url, "alice", new_token) == ["ok", "alice"]


def test_lock_slots_stay_bounded_whatever_the_project_names(make_server):
    """Every cold page takes a fetch lock: many distinct names (one per request) must not
    make one lock file each, and every request still gets a JSON answer."""
    with Upstream() as up:
        up.add_wheel("real-pkg", "1.0")
        s = make_server(mirror_url=up.url, args=("--workers", "2"))
        session = requests.Session()
        for i in range(SLOTS + 300):
            r = session.get(f"{s.url}/root/pypi/+simple/no-such-{i}/", headers=JSON, timeout=30)
            assert r.status_code == 404, r.text
            assert "message" in r.json()
        locks = list((s.serverdir / "locks").iterdir())
        assert 0 < len(locks) <= SLOTS
        r = session.get(f"{s.url}/root/pypi/+simple/real-pkg/", headers=JSON, timeout=30)
        assert r.status_code == 200 and r.json()["files"]


def test_a_hung_upstream_does_not_hold_all_workers(make_server):
    """Requests for a project whose upstream never answers wait in some threads; other
    projects and the API are still answered by both workers, quickly."""
    with Upstream() as up:
        up.add_wheel("hung-pkg", "1.0")
        up.add_wheel("fine-pkg", "1.0")
        up.hang_targets.add("hung-pkg")
        s = make_server(mirror_url=up.url, args=("--workers", "2", "--request-timeout", "1"))
        a, b = pinned_sessions(s.url)
        hung: list = []

        def ask_hung():
            try:
                hung.append(requests.get(f"{s.url}/root/pypi/+simple/hung-pkg/", headers=JSON, timeout=90))
            except requests.RequestException as e:
                hung.append(e)

        threads = [threading.Thread(target=ask_hung) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(1.5)  # they have all reached upstream or a fetch lock
        for session in (a, b):
            t0 = time.monotonic()
            assert session.get(f"{s.url}/+api", timeout=10).status_code == 200
            r = session.get(f"{s.url}/root/pypi/+simple/fine-pkg/", headers=JSON, timeout=10)
            assert r.status_code == 200 and r.json()["files"], r.text
            assert time.monotonic() - t0 < 15  # not held by the hung fetches (they wait for 90 s)
        assert up.count("/simple/hung-pkg/") <= 2  # one per process at most, not one per request
        up.hang_targets.clear()
        for t in threads:
            t.join(90)
        assert len(hung) == 12
        for r in hung:  # every request got an answer, a JSON one if it is an error
            assert isinstance(r, requests.Response), r
            assert r.status_code == 200 or "message" in r.json(), r.text


@pytest.mark.parametrize("value", ["0", "-1", "65", "1000000", "two", ""])
def test_worker_counts_out_of_range_are_refused_in_one_line(tmp_path, value):
    p = run_server("--serverdir", str(tmp_path / "srv"), "--workers", value)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("devpi server: error: argument --workers: ")  # argparse's
    assert not (tmp_path / "srv").exists()


def test_pin_cpu_with_workers_is_refused_in_one_line(tmp_path):
    p = run_server("--serverdir", str(tmp_path / "srv"), "--workers", "2", "--pin-cpu", "auto")
    assert_one_line(p, "cannot be combined with --workers")


def test_the_worker_environment_does_not_bypass_the_server_dir_lock(make_server):
    """A process started by hand as a "worker" (its environment forged) on a server dir
    whose lock another server holds is refused: only the parent holding the lock may
    start workers there."""
    s = make_server()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        fd = listener.fileno()
        p = run_server("--serverdir", str(s.serverdir), env={"DEVPI_WORKER_FD": str(fd),
                                                                  "DEVPI_WORKER_INDEX": "1"}, pass_fds=(fd,))
        assert_one_line(p, "does not hold the lock")
    finally:
        listener.close()
    p = run_server("--serverdir", str(s.serverdir), env={"DEVPI_WORKER_FD": "0"})
    assert_one_line(p, "is not a listening socket")
    assert s.api("GET", "/+api").status_code == 200  # the running server is unharmed


def test_a_worker_that_cannot_start_stops_the_server_in_one_line(tmp_path):
    """An unusable storage: worker 0 says why in one line, and the parent exits with it."""
    t0 = time.monotonic()
    p = run_server("--serverdir", str(tmp_path / "srv"), "--workers", "2",
                   "--storage", "postgresql://nobody@127.0.0.1:9/nothing")
    assert time.monotonic() - t0 < 30
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    [line] = [line for line in p.stderr.splitlines() if "devpi server" in line]
    assert line.startswith("devpi server: cannot open storage"), p.stderr
    assert "listening on" not in p.stdout
