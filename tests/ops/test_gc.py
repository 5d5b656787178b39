"""``devpi gc`` and the server's background collection: exactly the blobs no row names,
once they have been unreferenced for the grace period; nothing named is ever lost, not even
when the collection is killed half-way."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import pytest
import requests
from ops_helpers import (
    admin_json,
    backdate,
    backdate_candidates,
    blob_path,
    blobs_on_disk,
    devpi_admin,
    plant_blob,
    referenced,
    upload_wheel,
    wait_until,
)

HOUR = 3600.0


@pytest.fixture
def stage(server):
    auth = server.login("root", "root")
    server.create_index(auth, "dev", bases=[])
    return server, auth


def _files_still_served(server, index: str) -> None:
    """Every file row of the index is downloadable and hashes to its name."""
    r = requests.get(f"{server.url}/{index}/+simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                     timeout=30)
    for project in r.json()["projects"]:
        page = requests.get(f"{server.url}/{index}/+simple/{project['name']}/",
                            headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=30).json()
        for f in page["files"]:
            data = requests.get(requests.compat.urljoin(f"{server.url}/{index}/+simple/{project['name']}/", f["url"]),
                                timeout=30)
            assert data.status_code == 200, data.text
            assert hashlib.sha256(data.content).hexdigest() == f["hashes"]["sha256"]


def test_gc_deletes_exactly_the_unreferenced_blobs_past_the_grace_period(stage, tmp_path):
    server, auth = stage
    kept = upload_wheel(server, auth, "root/dev", tmp_path, "keepme", "1.0")
    gone = upload_wheel(server, auth, "root/dev", tmp_path, "dropme", "1.0")
    r = requests.delete(f"{server.url}/root/dev/dropme", auth=auth, timeout=30)
    assert r.status_code == 200, r.text
    old_orphan = plant_blob(server.serverdir, b"left by a crash long ago", age=2 * HOUR)
    young_orphan = plant_blob(server.serverdir, b"landed, its transaction not yet committed")
    named = referenced(server.serverdir)
    assert kept in named and gone not in named
    unreferenced = blobs_on_disk(server.serverdir) - named
    assert {gone, old_orphan, young_orphan} <= unreferenced  # and the deleted wheel's metadata blob
    for sha in unreferenced - {young_orphan}:
        backdate(blob_path(server.serverdir, sha), 2 * HOUR)

    # first run, beside the running server: notes them, deletes none (none was noted before)
    report = admin_json("gc", "--serverdir", str(server.serverdir), "--grace", str(HOUR))["collection"]
    assert report["deleted"] == 0 and report["noted"] == len(unreferenced)
    assert blobs_on_disk(server.serverdir) >= unreferenced

    # an hour later: the old ones go, the young orphan (its file is new) stays, named ones stay
    backdate_candidates(server.serverdir, HOUR + 60)
    report = admin_json("gc", "--serverdir", str(server.serverdir), "--grace", str(HOUR))["collection"]
    assert report["deleted"] == len(unreferenced) - 1
    assert blobs_on_disk(server.serverdir) == named | {young_orphan}
    _files_still_served(server, "root/dev")

    # a blob named again before its grace ended is not deleted: re-upload the deleted wheel
    again = upload_wheel(server, auth, "root/dev", tmp_path, "dropme", "1.0")
    assert again == gone
    report = admin_json("gc", "--serverdir", str(server.serverdir), "--grace", "0")["collection"]
    assert report["deleted"] == 1  # the young orphan, now that the grace is 0
    assert blobs_on_disk(server.serverdir) == referenced(server.serverdir)
    _files_still_served(server, "root/dev")


def test_server_collects_in_the_background(make_server, tmp_path):
    server = make_server(args=("--gc-interval", "1", "--gc-grace", "2", "--disk-check-interval", "0.2"))
    auth = server.login("root", "root")
    server.create_index(auth, "dev", bases=[])
    kept = upload_wheel(server, auth, "root/dev", tmp_path, "stays", "1.0")
    orphan = plant_blob(server.serverdir, b"nobody names me", age=HOUR)
    wait_until(lambda: not blob_path(server.serverdir, orphan).exists(), 30, "background collection")
    assert blob_path(server.serverdir, kept).exists()
    assert blobs_on_disk(server.serverdir) == referenced(server.serverdir)
    status = requests.get(f"{server.url}/+status", auth=auth, timeout=30).json()["result"]["disk"]["server"]
    assert status["gc_deleted_total"] >= 1 and status["gc_runs_total"] >= 1


def _many_orphans(serverdir, n: int) -> set[str]:
    return {plant_blob(serverdir, os.urandom(64) + str(i).encode(), age=HOUR) for i in range(n)}


def test_killed_gc_loses_nothing_named_and_a_repeat_completes(stage, tmp_path):
    server, auth = stage
    for i in range(5):
        upload_wheel(server, auth, "root/dev", tmp_path, f"precious{i}", "1.0")
    named = referenced(server.serverdir)
    orphans = _many_orphans(server.serverdir, 4000)
    proc = subprocess.Popen([sys.executable, "-m", "devpi.client", "gc", "--serverdir", str(server.serverdir),
                             "--grace", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # kill it once it is deleting: some orphans gone, not all
    wait_until(lambda: len(blobs_on_disk(server.serverdir) & orphans) < 3900 or proc.poll() is not None, 60,
               "gc started deleting")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    left = blobs_on_disk(server.serverdir)
    assert named <= left, "a referenced blob was lost"
    assert left & orphans, "the run finished before it was killed: nothing tested"
    _files_still_served(server, "root/dev")
    report = admin_json("gc", "--serverdir", str(server.serverdir), "--grace", "0")["collection"]
    assert report["skipped"] is False  # the killed run's lock went with it
    assert blobs_on_disk(server.serverdir) == named
    _files_still_served(server, "root/dev")


def test_server_killed_during_its_collection_loses_nothing(make_server, tmp_path):
    args = ("--gc-interval", "1", "--gc-grace", "0", "--disk-check-interval", "0.2")
    server = make_server(args=args)
    auth = server.login("root", "root")
    server.create_index(auth, "dev", bases=[])
    for i in range(3):
        upload_wheel(server, auth, "root/dev", tmp_path, f"kept{i}", "1.0")
    named = referenced(server.serverdir)
    orphans = _many_orphans(server.serverdir, 4000)
    wait_until(lambda: len(blobs_on_disk(server.serverdir) & orphans) < 3900, 60, "background gc started")
    server.kill()
    assert named <= blobs_on_disk(server.serverdir)
    server.start()
    wait_until(lambda: blobs_on_disk(server.serverdir) == named, 60, "the restarted server finished the job")
    _files_still_served(server, "root/dev")
    tmp_left = [p for p in (server.serverdir / "blobs" / "tmp").rglob("gc-*")]
    assert not tmp_left, tmp_left


def test_gc_refuses_a_missing_server_dir(tmp_path):
    done = devpi_admin("gc", "--serverdir", str(tmp_path / "nothing"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "no server dir" in done.stderr
    done = devpi_admin("gc", "--serverdir", str(tmp_path), "--grace", "-5")
    assert done.returncode == 2 and "Traceback" not in done.stderr


@pytest.mark.postgresql
def test_two_servers_on_postgresql_collect_in_turns(make_server, pg_cluster, tmp_path):
    """Several processes on one database and server dir: each runs the background task; the
    collection lock lets one work at a time, and together they delete exactly the orphans."""
    url = pg_cluster.new_database()
    shared = tmp_path / "shared"
    args = ("--gc-interval", "1", "--gc-grace", "1", "--disk-check-interval", "0.2")
    one = make_server(serverdir=shared, storage=url, args=args)
    two = make_server(serverdir=shared, storage=url, args=args)
    auth = one.login("root", "root")
    one.create_index(auth, "dev", bases=[])
    kept = {upload_wheel(srv, auth, "root/dev", tmp_path, f"pg-kept{i}", "1.0") for i, srv in enumerate((one, two))}
    orphans = _many_orphans(shared, 300)
    wait_until(lambda: not (blobs_on_disk(shared) & orphans), 60, "orphans collected")
    assert kept <= blobs_on_disk(shared)
    _files_still_served(one, "root/dev")
    _files_still_served(two, "root/dev")
    for srv in (one, two):
        assert "blob collection failed" not in srv.log_text()
