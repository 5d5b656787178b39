"""Attack tests for ``devpi import`` of our export format, and ``devpi export``'s target.

The attacker hands the admin an export directory (a "backup" from elsewhere) crafted to
write outside the server dir, to plant a file under another file's hash, to hang or
exhaust the importer, or to leave a half-imported server behind. What must hold instead:
every such import ends with one readable error line and a non-zero exit, no traceback, and
not a single row in the target. ``devpi export`` never writes into a directory that holds
anything, and what it writes is readable by its owner only (it holds password hashes).
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.dists import sdist_bytes, wheel_bytes

DEVPI = str(Path(sys.executable).with_name("devpi"))


def devpi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DEVPI, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def good_export(sec_servers, tmp_path_factory) -> Path:
    """A real export of a server with a user, a stage, a wheel and an sdist."""
    import requests

    s = sec_servers()
    auth = s.create_user("mallory", "pw")
    s.create_index(auth, "dev")
    for fn, data in (wheel_bytes("victim", "1.0"), sdist_bytes("victim", "1.0")):
        r = requests.post(f"{s.url}/mallory/dev/", auth=auth, timeout=60, files={"content": (fn, data)},
                          data={":action": "file_upload", "protocol_version": "1", "name": "victim", "version": "1.0"})
        assert r.status_code == 200, r.text
    dest = tmp_path_factory.mktemp("exports") / "good"
    r = devpi("export", "--serverdir", str(s.serverdir), str(dest))
    assert r.returncode == 0, r.stderr
    return dest


def rows(root: Path, table: str) -> tuple[list[str], list[list]]:
    lines = (root / "tables" / f"{table}.jsonl").read_text().splitlines()
    return json.loads(lines[0])["columns"], [json.loads(line) for line in lines[1:]]


def write_rows(root: Path, table: str, columns: list[str], values: list[list]) -> None:
    text = "".join(json.dumps(v) + "\n" for v in [{"columns": columns}, *values])
    (root / "tables" / f"{table}.jsonl").write_text(text)


def edit_files(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A mutation that changes the first files row (as a dict) in place."""
    def mutate(root: Path) -> None:
        columns, values = rows(root, "files")
        row = dict(zip(columns, values[0], strict=True))
        change(row)
        values[0] = [row[c] for c in columns]
        write_rows(root, "files", columns, values)
    return mutate


def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        manifest = json.loads((root / "manifest.json").read_text())
        change(manifest)
        (root / "manifest.json").write_text(json.dumps(manifest))
    return mutate


def a_blob(root: Path) -> Path:
    _, values = rows(root, "files")
    columns, _ = rows(root, "files")
    sha = dict(zip(columns, values[0], strict=True))["sha256"]
    return root / "files" / sha[:2] / sha


def corrupt_blob(root: Path) -> None:
    path = a_blob(root)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def symlink_blob(root: Path) -> None:
    path = a_blob(root)
    path.unlink()
    path.symlink_to("/etc/hostname")


def fifo_blob(root: Path) -> None:
    path = a_blob(root)
    path.unlink()
    os.mkfifo(path)


def duplicate_user(root: Path) -> None:
    columns, values = rows(root, "users")
    write_rows(root, "users", columns, [*values, values[-1]])
    edit_manifest(lambda m: m["tables"].update(users=len(values) + 1))(root)


def drop_release(root: Path) -> None:
    columns, values = rows(root, "releases")
    write_rows(root, "releases", columns, values[1:] if len(values) > 1 else [])


def drop_column(root: Path) -> None:
    columns, values = rows(root, "users")
    i = columns.index("pwhash")
    write_rows(root, "users", columns[:i] + columns[i + 1:], [v[:i] + v[i + 1:] for v in values])


def edit_user(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        columns, values = rows(root, "users")
        row = dict(zip(columns, values[-1], strict=True))
        change(row)
        values[-1] = [row[c] for c in columns]
        write_rows(root, "users", columns, values)
    return mutate


def edit_kv(root: Path, key: str, value: str) -> None:
    columns, values = rows(root, "kv")
    write_rows(root, "kv", columns, [[k, value if k == key else v] for k, v in values])


def raw_append(table: str, text: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        with open(root / "tables" / f"{table}.jsonl", "a") as f:
            f.write(text)
    return mutate


def raw_manifest_serial(digits: int) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        text = (root / "manifest.json").read_text()
        manifest = json.loads(text)
        (root / "manifest.json").write_text(text.replace(f'"serial":{manifest["serial"]}', '"serial":' + "9" * digits))
    return mutate


def symlink_manifest(root: Path) -> None:
    (root / "manifest.json").unlink()
    (root / "manifest.json").symlink_to("/etc/passwd")


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "relpath-traversal": (edit_files(lambda r: r.update(relpath="+f/../../../../etc/passwd")), "not a safe"),
    "relpath-absolute": (edit_files(lambda r: r.update(relpath="/etc/passwd")), "not a safe"),
    "sha256-path": (edit_files(lambda r: r.update(sha256="../../../../../etc/passwd".ljust(64, "a"))),
                    "not a lower-case hex sha256"),
    "filename-path": (edit_files(lambda r: r.update(filename="../../evil.whl")), "not a plain file name"),
    "blob-not-its-hash": (corrupt_blob, "does not match its hash"),
    "blob-symlink": (symlink_blob, "a symlink, not a regular file"),
    "blob-fifo": (fifo_blob, "not a regular file"),
    "blob-missing": (lambda root: a_blob(root).unlink(), "is missing"),
    "blob-size-lies": (edit_files(lambda r: r.update(size=r["size"] + 1)), "its row says"),
    "future-format": (edit_manifest(lambda m: m.update(format_version=2)), "newer than this devpi reads"),
    "not-our-format": (edit_manifest(lambda m: m.update(format="something-else")), "does not describe"),
    "future-schema": (edit_manifest(lambda m: m.update(schema=["9999"])), "is not this devpi's"),
    "manifest-malformed": (lambda root: (root / "manifest.json").write_text('{"format": "devpi-export", '),
                           "malformed JSON"),
    "manifest-symlink": (symlink_manifest, "a symlink, not a regular file"),
    "row-malformed": (raw_append("users", '["half a row", \n'), "malformed JSON"),
    "row-nan": (raw_append("releases", '[1, 1, "9.9", "{}", NaN, null, "9.9"]\n'), "malformed JSON"),
    "huge-int": (edit_files(lambda r: r.update(size=10**30)), "within 64 bits"),
    "huge-int-digits": (raw_manifest_serial(5000), "malformed JSON"),
    "huge-count": (edit_manifest(lambda m: m["tables"].update(users=10**18)), "the manifest says"),
    "huge-float": (edit_files(lambda r: r.update(created=1e308)), "finite number"),
    "unknown-table": (edit_manifest(lambda m: m["tables"].update({"../../etc/passwd": 0})), "unknown table"),
    "row-dropped": (drop_release, "the manifest says"),
    "column-dropped": (drop_column, "are missing"),
    "string-too-long": (edit_user(lambda r: r.update(name="x" * 1000)), "longer than"),
    "nul-in-string": (edit_user(lambda r: r.update(name="mal\x00lory")), "NUL"),
    "nested-json-malformed": (edit_user(lambda r: r.update(config='{"email": ')), "malformed JSON"),
    "nested-json-wrong-type": (edit_files(lambda r: r.update(log='{"not": "a list"}')), "must hold a JSON list"),
    "wrong-type": (edit_user(lambda r: r.update(pwhash=12345)), "must be a string"),
    "duplicate-row": (duplicate_user, "do not fit together"),
    "secret-not-hex": (lambda root: edit_kv(root, "secret", "not-hex"), "the exported secret is not"),
    "uuid-path": (lambda root: edit_kv(root, "uuid", "../../etc"), "the exported uuid is not"),
    "dangling-reference": (edit_files(lambda r: r.update(release_id=999999)), "do not fit together"),
}


def hostile_copy(good: Path, tmp_path: Path, case: str) -> Path:
    root = tmp_path / f"hostile-{case}"
    shutil.copytree(good, root, symlinks=True)
    HOSTILE[case][0](root)
    return root


def assert_refused(r: subprocess.CompletedProcess, expected: str) -> None:
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("devpi import: error: ") and expected in lines[0], lines[0]


def assert_no_rows_sqlite(serverdir: Path) -> None:
    db = serverdir / "devpi.sqlite"
    if not db.exists():
        return
    with sqlite3.connect(db) as conn:
        for table in ("users", "indexes", "projects", "releases", "files", "changelog"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
        assert conn.execute("SELECT count(*) FROM kv WHERE key IN ('secret', 'uuid')").fetchone()[0] == 0


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_export_is_refused_with_no_rows_written(good_export, tmp_path, case):
    source = hostile_copy(good_export, tmp_path, case)
    target = tmp_path / "target"
    assert_refused(devpi("import", "--serverdir", str(target), str(source)), HOSTILE[case][1])
    assert_no_rows_sqlite(target)


@pytest.mark.parametrize("case", ["blob-not-its-hash", "duplicate-row", "dangling-reference", "huge-int"])
def test_hostile_export_writes_no_rows_on_postgresql(good_export, tmp_path, pg_cluster, case):
    import psycopg

    source = hostile_copy(good_export, tmp_path, case)
    url = pg_cluster.new_database()
    assert_refused(devpi("import", "--serverdir", str(tmp_path / "target"), "--storage", url, str(source)),
                   HOSTILE[case][1])
    with psycopg.connect(url) as conn:
        for table in ("users", "indexes", "files", "changelog"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    # and the refused database is still a fresh one: the good export goes in afterwards
    r = devpi("import", "--serverdir", str(tmp_path / "target2"), "--storage", url, str(good_export))
    assert r.returncode == 0, r.stderr


def test_the_untouched_export_imports(good_export, tmp_path):
    """The hostile copies above differ from this one only in what each case changed."""
    r = devpi("import", "--serverdir", str(tmp_path / "target"), str(good_export))
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(tmp_path / "target" / "devpi.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM files").fetchone()[0] == 2


def test_export_is_private_to_its_owner(good_export):
    for path in [good_export, *good_export.rglob("*")]:
        if path.is_dir():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


@pytest.mark.parametrize("occupant", ["file-inside", "is-a-file", "is-a-symlink"])
def test_export_refuses_a_target_that_holds_anything(sec_servers, tmp_path, occupant):
    s = sec_servers()
    target = tmp_path / "target"
    if occupant == "file-inside":
        target.mkdir()
        (target / "precious.txt").write_text("keep me")
    elif occupant == "is-a-file":
        target.write_text("keep me")
    else:
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    r = devpi("export", "--serverdir", str(s.serverdir), str(target))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devpi export: error: "), r.stderr
    if occupant == "file-inside":
        assert [p.name for p in target.iterdir()] == ["precious.txt"]
    elif occupant == "is-a-file":
        assert target.read_text() == "keep me"
    else:
        assert not any((tmp_path / "elsewhere").iterdir())
    assert not (tmp_path / "target.tmp-export").exists()


def test_export_of_no_server_dir_is_one_line(tmp_path):
    r = devpi("export", "--serverdir", str(tmp_path / "nothing"), str(tmp_path / "out"))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp-export").exists()
