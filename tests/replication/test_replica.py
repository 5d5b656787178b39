"""A replica follows its primary (real processes): pip installs from it, its pages are the
primary's byte for byte, it keeps serving while the primary is gone and catches up after."""
from __future__ import annotations

import hashlib
import urllib.parse

import pytest
import requests
from support.dists import write_wheel
from support.pipinstall import installed, pip_install
from support.populate import SIMPLE_JSON, upload_wheel
from support.replication import (
    REPLICA_HEADER,
    SECRET,
    primary_args,
    replica_args,
    serial_of,
    status,
    wait_until,
    write_secret,
)

STALE = "X-Devpi-Replica-Stale-Since"


def _page(s, path: str, accept: str = "text/html") -> requests.Response:
    r = requests.get(s.url + path, headers={"Accept": accept}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def _caught_up(primary, replica) -> bool:
    return serial_of(replica) >= serial_of(primary)


@pytest.mark.parametrize("pair", ["sqlite", "postgresql"], indirect=True)
def test_pip_installs_from_the_replica_what_was_uploaded_to_the_primary(pair, tmp_path):
    primary, replica = pair
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    upload_wheel(primary, "alice/dev", "hello-lib", "1.0", alice)
    wait_until(lambda: _caught_up(primary, replica), what="the replica catching up")
    for accept in ("text/html", SIMPLE_JSON):
        a, b = _page(primary, "/alice/dev/+simple/hello-lib/", accept), _page(replica, "/alice/dev/+simple/hello-lib/", accept)
        assert a.content == b.content
        assert a.headers.get("ETag") and a.headers.get("ETag") == b.headers.get("ETag")
    # the replica's own search index took the serials in (the commit was announced as a local one)
    wait_until(lambda: "hello-lib" in requests.get(replica.url + "/+search?q=hello", headers={"Accept": "text/html"},
                                                   timeout=30).text, what="the replica's search finding it")
    result = pip_install(replica.url + "/alice/dev/+simple/", tmp_path / "target", "hello-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "target") == {"hello-lib": "1.0"}
    # the replica has its own copy of the file, and says what it is
    doc = status(replica)
    assert doc["role"] == "REPLICA"
    rep = doc["replication"]
    assert rep["role"] == "replica" and rep["primary_url"] == primary.url
    assert rep["serial"] == serial_of(primary) and rep["lag_serials"] == 0
    wait_until(lambda: status(replica)["replication"]["files"]["pending"] == 0, what="the files arriving")
    assert status(primary)["replication"] == {"role": "primary", "feed": True}
    # logins work on the replica (the secret came with serial 0); its token works for a write,
    # which goes to the primary (tests/replication/test_replica_writes.py)
    user, token = replica.login("alice", "alice-pw")
    assert requests.get(replica.url + "/+api", auth=(user, token), timeout=30).json()["result"]["authstatus"][0] == "ok"
    r = replica.api("PUT", "/alice/other", json={}, auth=(user, token))
    assert r.status_code == 200, r.text
    assert primary.api("GET", "/alice/other").status_code == 200


@pytest.mark.parametrize("pair", ["sqlite", "postgresql"], indirect=True)
def test_replica_serves_while_the_primary_is_down_and_catches_up_after(pair, tmp_path):
    primary, replica = pair
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    upload_wheel(primary, "alice/dev", "first-lib", "1.0", alice)
    wait_until(lambda: _caught_up(primary, replica), what="the replica catching up")
    wait_until(lambda: status(replica)["replication"]["files"]["pending"] == 0, what="the files arriving")
    primary.stop()
    wait_until(lambda: STALE in requests.get(replica.url + "/alice/dev/+simple/first-lib/", timeout=30).headers,
               what="the replica noticing the primary is gone")
    page = _page(replica, "/alice/dev/+simple/first-lib/")
    assert STALE in page.headers
    result = pip_install(replica.url + "/alice/dev/+simple/", tmp_path / "t1", "first-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    r = replica.upload("alice/dev", write_wheel(tmp_path, "new-lib", "1.0"), alice)  # as twine does
    assert r.status_code == 503 and primary.url in r.json()["message"]
    assert replica.api("DELETE", "/alice/dev/first-lib", auth=alice).status_code == 503
    rep = status(replica)["replication"]
    assert rep["stale_since"] and rep["last_error"] and "cannot reach the primary" in rep["last_error"]
    primary.start()
    for i in range(100):  # made while the replica is still waiting to reconnect (its back-off)
        upload_wheel(primary, "alice/dev", f"lib-{i}", "1.0", alice)
    wait_until(lambda: _caught_up(primary, replica), what="the replica catching up after the outage")
    assert STALE not in requests.get(replica.url + "/alice/dev/+simple/lib-99/", timeout=30).headers
    for path in ("/alice/dev/+simple/", "/alice/dev/+simple/lib-99/"):
        assert _page(replica, path).content == _page(primary, path).content
    result = pip_install(replica.url + "/alice/dev/+simple/", tmp_path / "t2", "lib-0", "lib-99")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("pair", ["sqlite", "postgresql"], indirect=True)
def test_a_killed_replica_continues_at_its_serial(pair, tmp_path):
    primary, replica = pair
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    for i in range(5):
        upload_wheel(primary, "alice/dev", f"lib-{i}", "1.0", alice)
    wait_until(lambda: _caught_up(primary, replica), what="the replica catching up")
    before = serial_of(replica)
    replica.kill()
    for i in range(5, 10):
        upload_wheel(primary, "alice/dev", f"lib-{i}", "1.0", alice)
    replica.start()
    assert serial_of(replica) >= before  # its own serials, not initialised again
    wait_until(lambda: _caught_up(primary, replica), what="the restarted replica catching up")
    assert _page(replica, "/alice/dev/+simple/").content == _page(primary, "/alice/dev/+simple/").content
    result = pip_install(replica.url + "/alice/dev/+simple/", tmp_path / "t", "lib-3", "lib-9")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_file_not_replicated_yet_is_fetched_on_demand(pair):
    """The file's blob is removed from the replica's store: a request fetches it from the primary."""
    primary, replica = pair
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    fn, sha = upload_wheel(primary, "alice/dev", "lazy-lib", "1.0", alice)
    wait_until(lambda: _caught_up(primary, replica), what="the replica catching up")
    wait_until(lambda: status(replica)["replication"]["files"]["pending"] == 0, what="the files arriving")
    blob = next(replica.serverdir.glob(f"blobs/**/{sha}"))
    blob.unlink()
    href = requests.get(replica.url + "/alice/dev/+simple/lazy-lib/", headers={"Accept": SIMPLE_JSON},
                        timeout=30).json()["files"][0]["url"]
    r = requests.get(urllib.parse.urljoin(replica.url + "/alice/dev/+simple/lazy-lib/", href), timeout=60)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == sha
    assert next(replica.serverdir.glob(f"blobs/**/{sha}")).exists()  # kept


def test_the_replica_has_no_feed_of_its_own(pair):
    """A replica does not feed others in this slice; its primary's feed answers the secret."""
    primary, replica = pair
    r = requests.get(primary.url + "/+replica/changes", params={"since": 0, "wait": 0},
                     headers={REPLICA_HEADER: SECRET}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-ndjson")
    r = requests.get(replica.url + "/+replica/changes", params={"since": 0, "wait": 0},
                     headers={REPLICA_HEADER: SECRET}, timeout=30)
    assert r.status_code == 404


def test_health_says_503_when_the_replica_lags_beyond_the_bound(make_server, tmp_path):
    secret = write_secret(tmp_path)
    primary = make_server(args=primary_args(secret))
    replica = make_server(args=replica_args(primary.url, secret, "--replica-max-lag", "1"))
    wait_until(lambda: requests.get(replica.url + "/+health", timeout=30).status_code == 200,
               what="the replica in sync")
    primary.stop()
    def unhealthy():
        r = requests.get(replica.url + "/+health", timeout=30)
        return r.status_code == 503 and r.json()

    doc = wait_until(unhealthy, what="the replica's health turning 503")
    assert "replica lag" in doc["message"] and "--replica-max-lag" in doc["message"]
    assert requests.get(replica.url + "/+api", timeout=30).status_code == 200  # still serving
    primary.start()
    wait_until(lambda: requests.get(replica.url + "/+health", timeout=30).status_code == 200,
               what="the replica back in sync")
