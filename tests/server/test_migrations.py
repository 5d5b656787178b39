"""A server dir written by an older version upgrades in place at start."""
import sqlite3

import requests
from support.dists import write_wheel


def _make_pre_0004(serverdir):
    """Turn the database back into what a server before migration 0004 left behind."""
    db = sqlite3.connect(serverdir / "devpi.sqlite")
    with db:
        db.execute("ALTER TABLE releases DROP COLUMN requires_python")
        db.execute("DELETE FROM alembic_version")
        db.executemany("INSERT INTO alembic_version (version_num) VALUES (?)", [("0002",), ("0003",)])
    db.close()


def test_older_server_dir_is_upgraded_in_place(server, tmp_path):
    alice = server.create_user("alice", "pw")
    server.create_index(alice, "dev")
    wheel = write_wheel(tmp_path, "pkg", "1.0", requires_python=">=3.9")
    assert server.upload("alice/dev", wheel, ("alice", "pw")).status_code == 200
    server.stop()
    _make_pre_0004(server.serverdir)
    db = sqlite3.connect(server.serverdir / "devpi.sqlite")
    assert "requires_python" not in [c[1] for c in db.execute("PRAGMA table_info(releases)")]
    db.close()

    server.start()
    page = server.api("GET", "/alice/dev/+simple/pkg/",
                      headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert [f["requires-python"] for f in page["files"]] == [">=3.9"]
    db = sqlite3.connect(server.serverdir / "devpi.sqlite")
    assert {r[0] for r in db.execute("SELECT version_num FROM alembic_version")} == {"0004"}
    db.close()


def test_blobs_of_an_older_layout_are_moved_at_start(server, tmp_path):
    """Before 0.2 blobs sat at blobs/aa/bb/<sha256>; a start moves them to blobs/aa/<sha256>
    and the files are served as before."""
    alice = server.create_user("alice", "pw")
    server.create_index(alice, "dev")
    wheel = write_wheel(tmp_path, "pkg", "1.0")
    assert server.upload("alice/dev", wheel, ("alice", "pw")).status_code == 200
    server.stop()
    blobs = server.serverdir / "blobs"
    stored = [p for p in blobs.glob("??/*") if p.is_file()]
    assert stored, "the upload left no blob"
    for blob in stored:  # back to the old layout
        old = blob.parent / blob.name[2:4] / blob.name
        old.parent.mkdir(exist_ok=True)
        blob.rename(old)
    (blobs / "LAYOUT").unlink()
    for empty in blobs.glob("??"):
        if not any(empty.iterdir()):
            empty.rmdir()

    server.start()
    assert (blobs / "LAYOUT").exists()
    assert sorted(p.relative_to(blobs) for p in blobs.glob("??/*") if p.is_file()) == \
        sorted(p.relative_to(blobs) for p in stored)
    assert not [p for p in blobs.glob("??/??") if p.is_dir()]
    page = server.api("GET", "/alice/dev/+simple/pkg/",
                      headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    [f] = page["files"]
    body = requests.get(f"{server.url}/alice/dev/+simple/pkg/{f['url']}", timeout=30)
    assert body.status_code == 200
    assert body.content == wheel.read_bytes()


def test_temp_files_a_stopped_server_left_are_cleared_at_start(server):
    """A download or upload cut off by a crash leaves a temp file, never named by any row:
    the next start clears it (in the dead process's own temp dir, or loose from an
    older version), and the new process writes into a directory of its own."""
    server.stop()
    tmp = server.serverdir / "blobs" / "tmp"
    [old_dir] = [p for p in tmp.iterdir() if p.is_dir()]
    (old_dir / "upload-cut-off.whl").write_bytes(b"half a wheel")
    (tmp / "upload-from-an-older-version.whl").write_bytes(b"half a wheel")
    server.start()
    assert not old_dir.exists()
    assert not (tmp / "upload-from-an-older-version.whl").exists()
    [new_dir] = [p for p in tmp.iterdir() if p.is_dir()]
    assert (new_dir / ".owner").exists()
