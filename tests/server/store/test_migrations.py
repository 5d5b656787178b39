"""A server dir written by an older version upgrades in place at start."""
import sqlite3

import requests
from devpi.server.store.migrate import known_heads
from support.dists import write_sdist, write_wheel


def _make_pre_0004(serverdir):
    """Turn the database back into what a server before migration 0004 left behind (so also
    without what later ones added)."""
    db = sqlite3.connect(serverdir / "devpi.sqlite")
    with db:
        db.execute("DROP TABLE tokens")  # 0006
        db.execute("DROP TABLE audit")  # what 0007 added
        db.execute("DROP TABLE blob_gc_candidates")  # what 0008 added
        db.execute("DROP TABLE replication_rows")  # what 0009 added
        db.execute("DROP INDEX ix_mirror_pages_fetched")  # what 0010 added
        db.execute("DROP INDEX ix_mirror_files_created")
        db.execute("ALTER TABLE mirror_files DROP COLUMN last_access")
        db.execute("DROP INDEX ix_releases_canonical")
        db.execute("ALTER TABLE releases DROP COLUMN canonical_version")
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
    assert {r[0] for r in db.execute("SELECT version_num FROM alembic_version")} == known_heads()
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


def _engine_of(server):
    """SQLAlchemy on the server's own database, whichever engine it runs on."""
    import sqlalchemy as sa

    url = server.storage or f"sqlite:///{server.serverdir / 'devpi.sqlite'}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url)


def _make_pre_0005(server, project: str, odd_version: str) -> None:
    """What a server before migration 0005 left behind: no canonical_version column (nor its
    index), and a release whose version is no PEP 440 version (older servers and imports
    stored such), written as such a server wrote it."""
    import sqlalchemy as sa

    engine = _engine_of(server)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE tokens"))  # 0006: a server before 0005 had none
        conn.execute(sa.text("DROP TABLE audit"))  # what 0007 added
        conn.execute(sa.text("DROP TABLE blob_gc_candidates"))  # what 0008 added
        conn.execute(sa.text("DROP TABLE replication_rows"))  # what 0009 added
        conn.execute(sa.text("DROP INDEX ix_mirror_pages_fetched"))  # what 0010 added
        conn.execute(sa.text("DROP INDEX ix_mirror_files_created"))
        conn.execute(sa.text("ALTER TABLE mirror_files DROP COLUMN last_access"))
        conn.execute(sa.text("DROP INDEX ix_releases_canonical"))
        conn.execute(sa.text("ALTER TABLE releases DROP COLUMN canonical_version"))
        conn.execute(sa.text("DELETE FROM alembic_version"))
        conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES ('0004')"))
        pid = conn.execute(sa.text("SELECT id FROM projects WHERE name = :n"), {"n": project}).scalar_one()
        conn.execute(sa.text("INSERT INTO releases (project_id, version, metadata, created) "
                             "VALUES (:p, :v, '{}', 0)"), {"p": pid, "v": odd_version})
        columns = [c["name"] for c in sa.inspect(conn).get_columns("releases")]
    engine.dispose()
    assert "canonical_version" not in columns


def test_releases_get_their_canonical_version_on_upgrade(any_server, tmp_path):
    """An older server dir gains releases.canonical_version, filled for every release: "4.0.0"
    then finds the stored "4.0" (upload, yank), and a version that is no PEP 440 version is
    its own canonical spelling and found as before."""
    import sqlalchemy as sa

    server = any_server
    alice = server.create_user("alice", "pw")
    server.create_index(alice, "dev", volatile=True)
    wheel = write_wheel(tmp_path, "pkg", "4.0")
    assert server.upload("alice/dev", wheel, ("alice", "pw")).status_code == 200
    server.stop()
    _make_pre_0005(server, "pkg", "nightly-2024")

    server.start()
    engine = _engine_of(server)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT version, canonical_version FROM releases")).all())
        heads = {r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("releases")}
    engine.dispose()
    assert stored == {"4.0": "4", "nightly-2024": "nightly-2024"}
    assert heads == known_heads()
    assert "ix_releases_canonical" in indexes

    sdist = write_sdist(tmp_path, "pkg", "4.0.0")
    assert server.upload("alice/dev", sdist, ("alice", "pw")).status_code == 200
    page = server.api("GET", "/alice/dev/+simple/pkg/",
                      headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert sorted(f["filename"] for f in page["files"]) == sorted([wheel.name, sdist.name])
    assert page["versions"] == ["4.0"]  # the odd release has no files, so no page entry
    assert server.api("POST", "/alice/dev/pkg/4.0.0/+yank", json={}, auth=alice).status_code == 200
    assert all(f["yanked"] is not False for f in server.api(
        "GET", "/alice/dev/+simple/pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()["files"])
    assert server.api("DELETE", "/alice/dev/pkg/nightly-2024", auth=alice).status_code == 200
    assert server.api("DELETE", "/alice/dev/pkg/nightly-2024", auth=alice).status_code == 404


def test_a_database_of_a_newer_devpi_is_refused_in_one_line(server):
    """No downgrade: a server dir whose schema has a revision this devpi does not know (a newer
    devpi wrote it) is refused with one line saying so, and left as it was."""
    import subprocess
    import sys

    from support.server import DEAD_UPSTREAM

    server.stop()
    db = sqlite3.connect(server.serverdir / "devpi.sqlite")
    with db:
        db.execute("INSERT INTO alembic_version (version_num) VALUES ('9999_from_the_future')")
    db.close()
    p = subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(server.serverdir), "--port", "0",
                        "--mirror-url", DEAD_UPSTREAM], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if "9999_from_the_future" in line]
    assert len(lines) == 1 and lines[0].startswith("devpi server: ") and "newer devpi" in lines[0], p.stderr
    db = sqlite3.connect(server.serverdir / "devpi.sqlite")
    assert "9999_from_the_future" in {r[0] for r in db.execute("SELECT version_num FROM alembic_version")}
    db.close()
