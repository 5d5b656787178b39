"""Writes sent to a replica go to its primary and are visible on the replica when they return
(real processes: twine, the devpi CLI, pip). No wait between a command returning and the
check that follows it: that is the promise (doc/replication.md, "Writes")."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from support.dists import write_wheel
from support.pipinstall import installed, pip_install
from support.populate import SIMPLE_JSON
from support.recording_proxy import recording_proxy
from support.replication import primary_args, replica_args, serial_of, status, wait_until, write_secret

BEHIND = "X-Devpi-Replica-Behind"


def _get(s, path: str, auth=None, accept: str = "application/json") -> requests.Response:
    return s.api("GET", path, auth=auth, headers={"Accept": accept})


def _twine(url: str, user: str, password: str, files: list[Path]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINE_")}
    cmd = [sys.executable, "-m", "twine", "upload", "--repository-url", url, "-u", user, "-p", password,
           "--non-interactive", "--disable-progress-bar", *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


class Devpi:
    """The repo's own ``devpi`` command in a subprocess, with a private client dir."""

    def __init__(self, clientdir: Path):
        self.clientdir = clientdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVPI_", "PIP_"))}
        self.env.update(no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost", PYTHONWARNINGS="ignore")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "devpi.client", "--clientdir", str(self.clientdir), *args],
                              capture_output=True, text=True, env=self.env, timeout=300)

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, f"devpi {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout


def _writes(replica) -> dict:
    return status(replica)["replication"]["writes"]


@pytest.mark.parametrize("pair", ["sqlite", "postgresql"], indirect=True)
def test_twine_upload_to_the_replica_is_visible_there_when_twine_returns(pair, tmp_path):
    primary, replica = pair
    # the user and the index are made through the replica too, each visible on return
    r = replica.api("PUT", "/alice", json={"password": "alice-pw"})
    assert r.status_code == 201, r.text
    assert _get(replica, "/alice").status_code == 200
    alice = replica.login("alice", "alice-pw")
    r = replica.api("PUT", "/alice/dev", json={"bases": []}, auth=alice)
    assert r.status_code == 200, r.text
    assert _get(replica, "/alice/dev").json()["result"]["type"] == "stage"
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = write_wheel(dist, "hello-lib", "1.0")
    proc = _twine(f"{replica.url}/alice/dev/", "alice", "alice-pw", [wheel])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = _get(replica, "/alice/dev/+simple/hello-lib/", accept=SIMPLE_JSON)
    assert page.status_code == 200, page.text
    assert [f["filename"] for f in page.json()["files"]] == [wheel.name]
    assert _get(primary, "/alice/dev/+simple/hello-lib/", accept=SIMPLE_JSON).json()["files"][0]["filename"] \
        == wheel.name
    result = pip_install(replica.url + "/alice/dev/+simple/", tmp_path / "target", "hello-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "target") == {"hello-lib": "1.0"}
    # a second version and a delete, each seen at once
    proc = _twine(f"{replica.url}/alice/dev/", "alice", "alice-pw", [write_wheel(dist, "hello-lib", "2.0")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(_get(replica, "/alice/dev/hello-lib").json()["result"]) == ["1.0", "2.0"]
    r = replica.api("DELETE", "/alice/dev/hello-lib/1.0", auth=alice)
    assert r.status_code == 200, r.text
    assert BEHIND not in r.headers
    assert sorted(_get(replica, "/alice/dev/hello-lib").json()["result"]) == ["2.0"]
    writes = _writes(replica)
    assert writes["forwarded"] == 5 and writes["behind"] == 0 and writes["primary_unreachable"] == 0


@pytest.mark.parametrize("pair", ["sqlite", "postgresql"], indirect=True)
def test_devpi_index_create_and_push_through_the_replica(pair, tmp_path):
    primary, replica = pair
    devpi = Devpi(tmp_path / "client")
    devpi.ok("use", replica.url)
    devpi.ok("user", "-c", "alice", "password=alice-pw", "email=alice@example.org")
    devpi.ok("login", "alice", "--password", "alice-pw")
    devpi.ok("index", "-c", "dev", "bases=")
    for s in (replica, primary):
        assert _get(s, "/alice/dev").status_code == 200
    devpi.ok("index", "-c", "prod", "bases=", "volatile=False")
    assert _get(replica, "/alice/prod").json()["result"]["volatile"] is False
    devpi.ok("index", "alice/dev", "title=Dev index")
    assert _get(replica, "/alice/dev").json()["result"]["title"] == "Dev index"
    devpi.ok("use", "alice/dev")
    devpi.ok("upload", str(write_wheel(tmp_path, "push-lib", "1.0")))
    assert _get(replica, "/alice/dev/push-lib").json()["result"]["1.0"]["+links"]
    devpi.ok("push", "push-lib==1.0", "alice/prod")
    for s in (replica, primary):
        page = _get(s, "/alice/prod/+simple/push-lib/", accept=SIMPLE_JSON)
        assert page.status_code == 200 and [f["filename"] for f in page.json()["files"]] == ["push_lib-1.0-py3-none-any.whl"]
    result = pip_install(replica.url + "/alice/prod/+simple/", tmp_path / "target", "push-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    devpi.ok("index", "--delete", "-y", "alice/dev")
    assert _get(replica, "/alice/dev").status_code == 404


@pytest.mark.parametrize("pair", ["sqlite", "postgresql"], indirect=True)
def test_test_results_posted_to_the_replica_as_devpi_test_does(pair, tmp_path):
    """The POSTs of ``devpi test`` (client/testing_reporter.py): a live run opened, events,
    finished with tox's report; and the classic toxresult POST to the file's URL."""
    primary, replica = pair
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    r = replica.upload("alice/dev", write_wheel(tmp_path, "tested-lib", "1.0"), ("alice", "alice-pw"))
    assert r.status_code == 200, r.text
    links = _get(replica, "/alice/dev/tested-lib/1.0").json()["result"]["+links"]
    href = next(lk["href"] for lk in links if lk["rel"] == "releasefile")
    assert href.startswith(replica.url)  # the replica's own URLs
    relpath = "+f/" + href.split("/+f/", 1)[1].split("#")[0]
    headers = {"Accept": "application/json"}
    toxresult = {"reportversion": "1", "toxversion": "4.0", "platform": "linux", "host": "ci-1",
                 "testenvs": {"py3": {"test": [{"retcode": 0, "command": ["pytest"], "output": "1 passed"}]}}}
    opened = requests.post(f"{replica.url}/alice/dev/+testruns", auth=alice, headers=headers, timeout=60,
                           json={"file": relpath, "host": "ci-1", "platform": "linux", "python": "3.12",
                                 "label": "py3", "timeout": 60, "info": {"executable": "/usr/bin/python3"}})
    assert opened.status_code == 201, opened.text
    run = opened.json()["result"]
    shown = _get(replica, f"/alice/dev/+testruns/{run['id']}", auth=alice)
    assert shown.status_code == 200 and shown.json()["result"]["status"] == "running"
    r = requests.post(f"{replica.url}/alice/dev/+testruns/{run['id']}/events", auth=alice, headers=headers,
                      timeout=60, json={"key": run["key"], "events": [{"type": "test", "nodeid": "t.py::a",
                                                                         "outcome": "passed"}]})
    assert r.status_code == 200, r.text
    r = requests.post(f"{replica.url}/alice/dev/+testruns/{run['id']}/finish", auth=alice, headers=headers,
                      timeout=60, json={"key": run["key"], "exitcode": 0, "toxresult": toxresult,
                                        "interrupted": False, "error": None})
    assert r.status_code == 200, r.text
    runs = _get(replica, "/alice/dev/tested-lib/1.0/+testruns", auth=alice).json()["result"]
    assert [(x["id"], x["status"]) for x in runs] == [(run["id"], r.json()["result"]["status"])]
    assert runs[0]["status"] != "running"
    # the classic toxresult POST of a client without the test-run API
    r = requests.post(href.split("#")[0], json=toxresult, auth=alice, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    links = _get(replica, "/alice/dev/tested-lib/1.0").json()["result"]["+links"]
    assert len([lk for lk in links if lk["rel"] == "toxresult"]) == \
        len([lk for lk in _get(primary, "/alice/dev/tested-lib/1.0").json()["result"]["+links"]
             if lk["rel"] == "toxresult"]) >= 1


def test_a_write_with_a_primary_that_is_gone_is_503_naming_it(pair, tmp_path):
    primary, replica = pair
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    primary.stop()
    r = replica.upload("alice/dev", write_wheel(tmp_path, "late-lib", "1.0"), ("alice", "alice-pw"))
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("application/json")
    assert primary.url in r.json()["message"] and r.headers["X-Devpi-Primary-Url"] == primary.url
    assert r.headers.get("Retry-After")
    assert replica.api("PUT", "/bob", json={"password": "x"}).status_code == 503
    writes = _writes(replica)
    assert writes["primary_unreachable"] == 2 and primary.url in writes["last_failure"]
    primary.start()
    r = replica.api("PUT", "/bob", json={"password": "bob-pw"})
    assert r.status_code == 201, r.text
    assert _get(replica, "/bob").status_code == 200


@pytest.fixture
def proxied(make_server, tmp_path):
    """(primary, proxy, make_replica): the replica follows and forwards through a recording proxy."""
    secret = write_secret(tmp_path)
    primary = make_server(args=primary_args(secret))
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    with recording_proxy(primary.url) as proxy:
        def make_replica(*args: str):
            replica = make_server(args=replica_args(proxy.url, secret, *args))
            wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
            return replica
        yield primary, proxy, make_replica


def test_a_write_whose_serial_does_not_come_back_in_time_says_so(proxied):
    """The feed is cut (the proxy refuses it): the write is made on the primary and answered
    after --replica-write-wait with X-Devpi-Replica-Behind naming the serial not arrived."""
    primary, proxy, make_replica = proxied
    replica = make_replica("--replica-write-wait", "1")
    alice = replica.login("alice", "alice-pw")
    proxy.refuse = lambda method, path: 503 if path.startswith("/+replica/changes") else None
    primary.create_user("zed", "zed-pw")  # ends the replica's waiting request; its next one is refused
    wait_until(lambda: "503" in (status(replica)["replication"]["last_error"] or ""), what="the feed cut off")
    r = replica.api("PUT", "/alice/late", json={}, auth=alice)
    assert r.status_code == 200, r.text
    assert int(r.headers[BEHIND]) == serial_of(primary) > serial_of(replica)
    assert primary.api("GET", "/alice/late").status_code == 200
    writes = _writes(replica)
    assert writes["behind"] == 1 and "had not arrived" in writes["last_failure"]
    proxy.refuse = lambda method, path: None
    wait_until(lambda: _get(replica, "/alice/late").status_code == 200, what="the replica catching up")


def test_writes_forwarded_at_once_are_bounded(proxied):
    """With --threads 2 one write at a time is forwarded: the next gets 503 and Retry-After
    while reads are still answered."""
    primary, proxy, make_replica = proxied
    replica = make_replica("--threads", "2")
    alice = replica.login("alice", "alice-pw")
    release = threading.Event()
    proxy.hold = lambda method, path: release if path == "/alice/slow" else None
    answers: list[requests.Response] = []
    first = threading.Thread(target=lambda: answers.append(replica.api("PUT", "/alice/slow", json={}, auth=alice)))
    first.start()
    try:
        wait_until(lambda: any(w.path == "/alice/slow" for w in proxy.writes()), what="the first write at the primary")
        r = replica.api("PUT", "/alice/other", json={}, auth=alice)
        assert r.status_code == 503 and r.headers["Retry-After"] and "try again" in r.json()["message"]
        assert _get(replica, "/alice/dev").status_code == 200
    finally:
        release.set()
        first.join(60)
    assert answers[0].status_code == 200, answers[0].text
    assert _get(replica, "/alice/slow").status_code == 200
    assert _writes(replica)["refused_busy"] == 1
    assert replica.api("PUT", "/alice/other", json={}, auth=alice).status_code == 200
