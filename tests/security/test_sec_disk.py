"""Disk housekeeping under attack: what someone with write access to the server dir's blob
directories plants there, and what /+status's disk figures tell a reader who may not read
an index.

- A symlink, a directory, a stray or misnamed file in the blob directories (or a symlinked
  blob directory) is neither followed nor deleted by ``devpi gc`` or the server's
  background collection, nor hashed or moved by ``devpi fsck --repair``: the collector
  deletes only regular files named by a sha256 inside the store; fsck reports the rest.
- /+status lists the disk used by each index the reader may read, and nothing else: an
  anonymous reader or bob gets no entry for alice's read-restricted index, and the
  server-wide figures (blob store and mirror cache sizes, which would tell how much a
  hidden index holds) are for root only.
- Hostile option values are one-line errors.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ops"))
from ops_helpers import admin_json, blobs_on_disk, devpi_admin, plant_blob, upload_wheel, wait_until

FAKE = "ab" + "c" * 62  # a sha256-shaped name no blob has


@pytest.fixture
def store(make_server, tmp_path):
    server = make_server(args=("--gc-interval", "1", "--gc-grace", "0", "--disk-check-interval", "0.2"))
    auth = server.login("root", "root")
    server.create_index(auth, "dev", bases=[])
    upload_wheel(server, auth, "root/dev", tmp_path, "victim-pkg", "1.0")
    return server, auth


def _plant(serverdir: Path, outside: Path) -> dict[str, Path]:
    """Planted entries, by what they are."""
    blobs = serverdir / "blobs"
    (blobs / "ab").mkdir(exist_ok=True)
    victim = outside / FAKE
    victim.write_bytes(b"precious, outside the store")
    planted = {
        "symlink to a file outside": blobs / "ab" / FAKE,
        "directory named like a blob": blobs / "ab" / ("ab" + "d" * 62),
        "misnamed file": blobs / "ab" / "notablob.txt",
        "upper-case name": blobs / "ab" / ("AB" + "E" * 62),
        "symlinked blob directory": blobs / "ff",
    }
    os.symlink(victim, planted["symlink to a file outside"])
    planted["directory named like a blob"].mkdir()
    (planted["directory named like a blob"] / "inside").write_bytes(b"x")
    planted["misnamed file"].write_bytes(b"stray")
    planted["upper-case name"].write_bytes(b"stray")
    outdir = outside / "ffdir"
    outdir.mkdir()
    (outdir / ("ff" + "0" * 62)).write_bytes(b"outside, in a symlinked directory")
    if planted["symlinked blob directory"].exists():
        os.rmdir(planted["symlinked blob directory"])
    os.symlink(outdir, planted["symlinked blob directory"])
    return planted


def test_planted_entries_are_not_followed_nor_deleted(store, tmp_path):
    server, _ = store
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = _plant(server.serverdir, outside)
    orphan = plant_blob(server.serverdir, b"a real orphan", age=3600)
    report = admin_json("gc", "--serverdir", str(server.serverdir), "--grace", "0")["collection"]
    assert sorted(report["odd"]) == sorted(str(p) for k, p in planted.items() if k != "symlinked blob directory")
    assert orphan not in blobs_on_disk(server.serverdir)  # the collector did run
    for what, path in planted.items():
        assert os.path.lexists(path), what
    assert (outside / FAKE).read_bytes() == b"precious, outside the store"
    assert len(list((outside / "ffdir").iterdir())) == 1

    report = admin_json("fsck", "--serverdir", str(server.serverdir), "--repair", expect=1)
    assert len(report["odd_entries"]) == 4 and report["quarantined"] == []
    for what, path in planted.items():
        assert os.path.lexists(path), what
    assert (outside / FAKE).exists()
    # the server's own background collection leaves them too
    orphan = plant_blob(server.serverdir, b"another orphan", age=3600)
    wait_until(lambda: orphan not in blobs_on_disk(server.serverdir), 30, "background collection")
    for what, path in planted.items():
        assert os.path.lexists(path), what
    assert (outside / FAKE).exists() and len(list((outside / "ffdir").iterdir())) == 1


def test_a_planted_lock_symlink_is_refused(store, tmp_path):
    server, _ = store
    target = tmp_path / "not-a-lock"
    target.write_bytes(b"keep")
    lock = server.serverdir / "blobs" / "gc.lock"
    lock.unlink(missing_ok=True)
    os.symlink(target, lock)
    done = devpi_admin("gc", "--serverdir", str(server.serverdir), "--grace", "0")
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert target.read_bytes() == b"keep"


@pytest.fixture
def restricted(make_server, tmp_path):
    server = make_server()
    root = server.login("root", "root")
    alice = server.create_user("alice", "alice-pw")
    server.create_user("bob", "bob-pw")
    server.create_index(alice, "secret", bases=[], acl_read=["alice"])
    server.create_index(alice, "open", bases=[])
    upload_wheel(server, alice, "alice/secret", tmp_path, "hidden-pkg", "1.0")
    upload_wheel(server, alice, "alice/open", tmp_path, "shown-pkg", "1.0")
    return server, root, alice, server.login("bob", "bob-pw")


@pytest.mark.parametrize("who", ["anonymous", "bob"])
def test_status_disk_hides_read_restricted_indexes(restricted, who):
    server, root, alice, bob = restricted
    auth = None if who == "anonymous" else bob
    r = requests.get(f"{server.url}/+status", auth=auth, timeout=30)
    assert r.status_code == 200
    disk = r.json()["result"]["disk"]
    assert "alice/secret" not in disk["indexes"] and "server" not in disk
    assert disk["indexes"]["alice/open"]["files"] == 1
    assert "alice/secret" not in r.text and "hidden" not in r.text
    for reader in (alice, root):
        disk = requests.get(f"{server.url}/+status", auth=reader, timeout=30).json()["result"]["disk"]
        assert disk["indexes"]["alice/secret"]["files"] == 1 and disk["indexes"]["alice/secret"]["bytes"] > 0
    disk = requests.get(f"{server.url}/+status", auth=root, timeout=30).json()["result"]["disk"]
    assert "server" in disk and "mirror_cache_bytes" in disk["server"]
    html = requests.get(f"{server.url}/alice/secret", auth=auth, headers={"Accept": "text/html"}, timeout=30)
    assert html.status_code in (401, 403) and "Disk used" not in html.text
    html = requests.get(f"{server.url}/alice/open", auth=auth, headers={"Accept": "text/html"}, timeout=30)
    assert html.status_code == 200 and "Disk used" in html.text and "1 file<" in html.text


@pytest.mark.parametrize("args", [("--mirror-cache-size", "-1G"), ("--mirror-cache-size", "x" * 10000),
                                  ("--grace", "nan"), ("--grace", "-1")])
def test_hostile_gc_options_are_one_line_errors(tmp_path, args):
    done = devpi_admin("gc", "--serverdir", str(tmp_path), *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("devpi gc: error:")
