"""A read-restricted index on a replica: the replica holds every row (it must, to serve
alice), so the read checks have to hold there exactly as on the primary. Anonymous callers
and another user get nothing of alice's private index from the replica: not its pages, files,
JSON, search hits, listings or changelog entries; alice gets all of it."""
from __future__ import annotations

import urllib.parse

import pytest
import requests
from support.populate import SIMPLE_JSON, upload_wheel
from support.replication import (
    REPLICA_HEADER,
    SECRET,
    primary_args,
    replica_args,
    serial_of,
    wait_until,
    write_secret,
)

PROJECT = "hidden-gem-lib"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from support.server import ServerProcess

    base = tmp_path_factory.mktemp("replica-acl")
    secret = write_secret(base)
    primary = ServerProcess(base / "primary", args=primary_args(secret)).start()
    alice = primary.create_user("alice", "alice-pw")
    bob = primary.create_user("bob", "bob-pw")
    primary.create_index(alice, "secret", bases=[], acl_read=["alice"])
    _, sha = upload_wheel(primary, "alice/secret", PROJECT, "1.0", alice)
    replica = ServerProcess(base / "replica", args=replica_args(primary.url, secret)).start()
    try:
        wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
        page = f"{primary.url}/alice/secret/+simple/{PROJECT}/"
        href = requests.get(page, headers={"Accept": SIMPLE_JSON}, auth=alice, timeout=30).json()["files"][0]["url"]
        file_path = urllib.parse.urlsplit(urllib.parse.urljoin(page, href)).path
        yield {"replica": replica, "auth": {"alice": alice, "bob": bob, "anonymous": None}, "file": file_path,
               "sha": sha}
    finally:
        replica.stop()
        primary.stop()


def _get(world, who: str, path: str, accept: str = "application/json") -> requests.Response:
    auth = world["auth"][who]
    return requests.get(world["replica"].url + path, headers={"Accept": accept}, auth=auth, timeout=30)


def _paths(world) -> list[tuple[str, str]]:
    return [(f"/alice/secret/+simple/{PROJECT}/", "text/html"), (f"/alice/secret/+simple/{PROJECT}/", SIMPLE_JSON),
            ("/alice/secret/+simple/", "text/html"), (f"/alice/secret/{PROJECT}", "application/json"),
            (f"/alice/secret/{PROJECT}/1.0", "application/json"), (world["file"], "*/*"),
            ("/alice/secret", "application/json")]


@pytest.mark.parametrize("who", ["anonymous", "bob"])
def test_nothing_of_the_private_index_reaches_others_through_the_replica(world, who):
    for path, accept in _paths(world):
        r = _get(world, who, path, accept)
        assert r.status_code == (401 if who == "anonymous" else 403), (path, r.status_code)
        assert PROJECT not in r.text and world["sha"] not in r.text
        if accept != "text/html":  # a browser gets the web UI's error page
            assert r.headers["Content-Type"].startswith("application/json") and r.json()["message"]
    for path in ("/", "/alice"):
        r = _get(world, who, path)
        assert r.status_code == 200 and PROJECT not in r.text
        listed = r.json()["result"]
        assert "secret" not in (listed.get("alice", listed).get("indexes") or {})
    r = _get(world, who, "/+search?q=hidden", "text/html")  # the query itself is echoed: search a part
    assert r.status_code == 200 and PROJECT not in r.text and "/alice/secret" not in r.text
    current = serial_of(world["replica"])
    for serial in range(current + 1):
        r = _get(world, who, f"/+changelog/{serial}")
        assert r.status_code == 200 and PROJECT not in r.text and world["sha"] not in r.text


def test_alice_reads_her_index_on_the_replica(world):
    for path, accept in _paths(world):
        r = _get(world, "alice", path, accept)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    assert PROJECT in _get(world, "alice", f"/alice/secret/+simple/{PROJECT}/", "text/html").text
    assert f"/alice/secret/{PROJECT}" in _get(world, "alice", "/+search?q=hidden", "text/html").text


@pytest.mark.parametrize("who", ["anonymous", "bob", "alice"])
def test_the_replica_has_no_feed_for_anyone(world, who):
    """Not even with the right secret: the replica serves no feed, so its rows cannot be
    pulled from it by whoever reaches it."""
    for path in ("/+replica/changes?since=-1&wait=0", f"/+replica/blob/{world['sha']}"):
        r = requests.get(world["replica"].url + path, headers={REPLICA_HEADER: SECRET}, auth=world["auth"][who],
                         timeout=30)
        assert r.status_code == 404 and PROJECT not in r.text and r.json()["message"]
