"""Mirror indexes on a replica (real processes): the replica takes the primary's mirror cache,
fetches what it lacks through the primary (never from the upstream), keeps serving pip when the
primary is gone, and reports a file the upstream does not have in /+status without storing
anything of it."""
from __future__ import annotations

import urllib.parse

import pytest
import requests
from support.pipinstall import installed, pip_install
from support.populate import SIMPLE_JSON
from support.replication import primary_args, replica_args, serial_of, status, wait_until, write_secret


def _pair(make_server, upstream, tmp_path, cluster=None):
    """(primary, replica) on SQLite, or each with its own PostgreSQL database of ``cluster``."""
    secret = write_secret(tmp_path)
    db = {} if cluster is None else {"storage": cluster.new_database()}
    primary = make_server(mirror_url=upstream.url, args=primary_args(secret), **db)
    db = {} if cluster is None else {"storage": cluster.new_database()}
    replica = make_server(mirror_url=upstream.url, args=replica_args(primary.url, secret), **db)
    return primary, replica


def _mirrors(replica) -> dict:
    return status(replica)["replication"]["mirrors"]


def _files_of(s, index: str, project: str) -> list[tuple]:
    r = requests.get(f"{s.url}/{index}/+simple/{project}/", headers={"Accept": SIMPLE_JSON}, timeout=60)
    assert r.status_code == 200, r.text
    return sorted((f["filename"], f["url"], tuple(sorted(f["hashes"].items()))) for f in r.json()["files"])


def _install(s, index: str, tmp_path, name: str, *reqs: str) -> dict:
    result = pip_install(f"{s.url}/{index}/+simple/", tmp_path / name, *reqs)
    assert result.returncode == 0, result.stdout + result.stderr
    return installed(tmp_path / name)


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_the_replica_serves_the_primarys_mirror_cache_when_the_primary_is_gone(make_server, upstream, tmp_path,
                                                                              request, storage):
    old = upstream.add_wheel("up-lib", "0.9")  # on the page, never downloaded by the primary
    new = upstream.add_wheel("up-lib", "1.0")
    cluster = request.getfixturevalue("pg_cluster") if storage == "postgresql" else None
    primary, replica = _pair(make_server, upstream, tmp_path, cluster)
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=["root/pypi"])
    assert _install(primary, "root/pypi", tmp_path, "p", "up-lib") == {"up-lib": "1.0"}
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
    # the cache sync brings the page and the file (its bytes first) without anyone asking the replica
    wait_until(lambda: (m := _mirrors(replica))["rows_synced"]["pages"] >= 1 and m["rows_synced"]["files"] >= 1
               and m["waiting_files"] == 0, what="the mirror cache reaching the replica")
    assert _mirrors(replica)["mode"] == "through the primary"
    primary.stop()
    upstream.reset_log()
    assert _install(replica, "root/pypi", tmp_path, "r1", "up-lib") == {"up-lib": "1.0"}
    assert _install(replica, "alice/dev", tmp_path, "r2", "up-lib") == {"up-lib": "1.0"}
    # once it knows the primary is gone, the replica's page lists the files it holds; one it
    # does not hold is a JSON 503 (before that, it lists the primary's page as it had it)
    wait_until(lambda: status(replica)["replication"]["stale_since"] is not None,
               what="the replica noticing the primary is gone")
    assert [f[0] for f in _files_of(replica, "root/pypi", "up-lib")] == [new.filename]
    r = requests.get(f"{replica.url}/root/pypi/+f/{old.sha256[:3]}/{old.sha256[3:16]}/{old.filename}", timeout=60)
    assert r.status_code == 503 and "primary" in r.json()["message"], r.text
    assert upstream.count() == 0  # the replica never asked the upstream itself
    assert status(replica)["replication"]["stale_since"] is not None
    # a project the replica never held: a JSON error naming the unreachable primary, not a 500
    r = requests.get(replica.url + "/root/pypi/+simple/other-lib/", headers={"Accept": SIMPLE_JSON}, timeout=60)
    assert r.status_code == 404, r.text  # as doc/replication.md says: a project it does not hold
    assert r.headers["Content-Type"].startswith("application/json") and r.json()["message"]


def test_a_project_never_cached_comes_through_the_primary(make_server, upstream, tmp_path):
    upstream.add_wheel("new-lib", "2.0")
    primary, replica = _pair(make_server, upstream, tmp_path)
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
    upstream.reset_log()
    assert _install(replica, "root/pypi", tmp_path, "r", "new-lib") == {"new-lib": "2.0"}
    # the upstream saw the primary's fetches only: one page request, one download
    assert upstream.count("/simple/new-lib/") == 1
    (wheel,) = upstream.files("new-lib")
    assert upstream.downloads(wheel.filename) == 1
    # the replica's page is the primary's (same files, paths and hashes)
    assert _files_of(replica, "root/pypi", "new-lib") == _files_of(primary, "root/pypi", "new-lib")
    assert upstream.count("/simple/new-lib/") == 1 and upstream.downloads(wheel.filename) == 1


def test_an_upstream_404_for_a_file_is_named_and_nothing_is_stored(make_server, upstream, tmp_path):
    gone = upstream.add_wheel("gone-lib", "1.0")
    upstream.add_wheel("ok-lib", "1.0")
    upstream.fail[gone.filename] = 404
    primary, replica = _pair(make_server, upstream, tmp_path)
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
    ((filename, href, _),) = _files_of(replica, "root/pypi", "gone-lib")
    assert filename == gone.filename
    url = urllib.parse.urljoin(replica.url + "/root/pypi/+simple/gone-lib/", href)
    r = requests.get(url, timeout=60)
    assert r.status_code == 404, r.text
    assert r.headers["Content-Type"].startswith("application/json") and "404" in r.json()["message"]
    failing = _mirrors(replica)["failing"]
    assert any(gone.filename in f["what"] and "404" in f["reason"] for f in failing), failing
    assert not list(replica.serverdir.glob(f"blobs/**/{gone.sha256}"))
    assert not list(primary.serverdir.glob(f"blobs/**/{gone.sha256}"))
    # replication goes on: a file the primary caches later still reaches the replica
    assert _install(primary, "root/pypi", tmp_path, "p", "ok-lib") == {"ok-lib": "1.0"}
    wait_until(lambda: (m := _mirrors(replica))["rows_synced"]["files"] >= 1 and m["waiting_files"] == 0,
               what="the later file reaching the replica")
    assert status(replica)["replication"]["serial"] == serial_of(primary)
    # and once the upstream has the file, the same request works (nothing wrong was kept)
    upstream.fail.clear()
    r = requests.get(url, timeout=60)
    assert r.status_code == 200 and r.content == gone.content
