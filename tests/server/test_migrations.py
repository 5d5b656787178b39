"""A server dir written by an older version upgrades in place at start."""
import sqlite3

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
