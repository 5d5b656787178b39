"""``devpi export`` / ``devpi import`` (our format) against real server processes.

What must hold: an import gives the same pages byte for byte (same ETags) as the source
had at the exported serial, on SQLite, PostgreSQL and across them; an export taken while
uploads keep committing is the state at exactly its manifest's serial; a killed export
never looks complete, leaves the source intact, and the next run completes.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from support.dists import wheel_bytes
from support.populate import SIMPLE_JSON, get, populate, upload, upload_wheel
from support.server import ServerProcess

DEVPI = str(Path(sys.executable).with_name("devpi"))


def devpi(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([DEVPI, *args], capture_output=True, text=True, timeout=300, **kw)


def export(s: ServerProcess, dest: Path, *extra: str) -> dict:
    args = ["export", "--serverdir", str(s.serverdir), *extra, str(dest)]
    if s.storage:
        args[1:1] = ["--storage", s.storage]
    r = devpi(*args)
    assert r.returncode == 0, r.stderr
    return json.loads((dest / "manifest.json").read_text())


def import_into(serverdir: Path, source: Path, storage: str | None = None) -> None:
    args = ["import", "--serverdir", str(serverdir), str(source)]
    if storage:
        args[1:1] = ["--storage", storage]
    r = devpi(*args)
    assert r.returncode == 0, r.stderr


def answers(s: ServerProcess, paths: list[tuple[str, str]]) -> dict:
    """(path, Accept) -> (status, ETag, body) of each answer."""
    found = {}
    for path, accept in paths:
        r = get(s, path, accept)
        found[(path, accept)] = (r.status_code, r.headers.get("ETag"), r.content)
    return found


def page_paths(s: ServerProcess, indexes: list[str], projects: list[str]) -> list[tuple[str, str]]:
    """Simple pages (HTML, JSON), the JSON API and every file URL the source links to."""
    paths = [("/+api", "application/json")]
    for index in indexes:
        paths += [(f"/{index}", "application/json"), (f"/{index}/+simple/", "text/html"),
                  (f"/{index}/+simple/", SIMPLE_JSON)]
        for project in projects:
            paths += [(f"/{index}/+simple/{project}/", "text/html"), (f"/{index}/+simple/{project}/", SIMPLE_JSON),
                      (f"/{index}/{project}", "application/json")]
            page = get(s, f"/{index}/+simple/{project}/", SIMPLE_JSON)
            if page.status_code == 200:
                base = f"/{index}/+simple/{project}/"
                for f in page.json()["files"]:
                    url = requests.compat.urljoin(base, f["url"].split("#")[0])
                    paths.append((url, "*/*"))
    return paths


ENGINE_PAIRS = [("sqlite", "sqlite"), ("postgresql", "postgresql"), ("sqlite", "postgresql")]


@pytest.mark.parametrize(("source_engine", "target_engine"), ENGINE_PAIRS, ids=["-to-".join(p) for p in ENGINE_PAIRS])
def test_import_gives_the_same_pages_etags_and_files(make_server, tmp_path, request, source_engine, target_engine):
    def storage(engine):
        return request.getfixturevalue("pg_cluster").new_database() if engine == "postgresql" else None

    src = make_server(storage=storage(source_engine))
    state = populate(src, tmp_path)
    manifest = export(src, tmp_path / "backup")
    assert manifest["format"] == "devpi-export" and manifest["format_version"] == 1
    assert manifest["counts"]["doczips"] == 1 and manifest["counts"]["toxresults"] == 1
    paths = page_paths(src, ["alice/dev", "alice/merged"], ["pkg-a", "other-lib"])
    paths += [("/+changelog/" + str(manifest["serial"]), "application/json"),
              ("/alice/dev/pkg-a/1.0", "application/json"), ("/alice/dev/+f/nothing/here.whl", "*/*")]
    before = answers(src, paths)
    src.stop()

    target = tmp_path / "restored"
    target_storage = storage(target_engine)
    import_into(target, tmp_path / "backup", target_storage)
    dst = make_server(serverdir=target, storage=target_storage)
    after = answers(dst, paths)
    assert sorted(after) == sorted(before)
    for key in before:
        assert after[key] == before[key], key
    assert any(k[0].endswith(".whl") and v[0] == 200 for k, v in after.items())
    assert get(dst, "/+api").headers["X-Devpi-Serial"] == str(manifest["serial"])

    # the restored server takes the old password and token, and goes on from the serial
    assert dst.login("alice", "secret-pw")
    fn, data = wheel_bytes("pkg-a", "3.0")
    r = upload(dst, "alice/dev", fn, data, ("__token__", state["token"]), name="pkg-a", version="3.0")
    assert r.status_code == 200, r.text
    assert int(get(dst, "/+api").headers["X-Devpi-Serial"]) == manifest["serial"] + 1
    r = dst.api("PUT", "/alice/after-restore", json={}, auth=state["auth"])  # a login made on the source
    assert r.status_code == 200, r.text

    # pip installs from it with the hashes the source gave out
    filename, sha = state["wheel_10"]
    req = tmp_path / "req.txt"
    req.write_text(f"pkg-a==1.0 --hash=sha256:{sha}\n")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes", "-r", str(req),
                        "--target", str(tmp_path / "site"), "--index-url", f"{dst.url}/alice/dev/+simple/"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VERSION = '1.0'" in (tmp_path / "site" / "pkg_a" / "__init__.py").read_text()


def changelog(s: ServerProcess, serial: int) -> list[dict]:
    r = s.api("GET", f"/+changelog/{serial}", auth=("root", s.root_password))
    assert r.status_code == 200, r.text
    return r.json()["result"]["changes"]


def exported_rows(export_dir: Path, table: str) -> list[dict]:
    lines = (export_dir / "tables" / f"{table}.jsonl").read_text().splitlines()
    columns = json.loads(lines[0])["columns"]
    return [dict(zip(columns, json.loads(line), strict=True)) for line in lines[1:]]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_export_while_uploads_commit_is_the_state_at_its_serial(make_server, tmp_path, request, engine):
    storage = request.getfixturevalue("pg_cluster").new_database() if engine == "postgresql" else None
    src = make_server(storage=storage)
    auth = src.create_user("bob", "pw")
    src.create_index(auth, "dev")
    pages: dict[int, tuple] = {}  # serial -> the JSON simple page of "busy" at that serial

    def record() -> None:
        r = get(src, "/bob/dev/+simple/busy/", SIMPLE_JSON)
        pages[int(r.headers["X-Devpi-Serial"])] = (r.status_code, r.headers.get("ETag"), r.content)

    upload_wheel(src, "bob/dev", "busy", "0.0", auth)
    record()
    stop, errors = threading.Event(), []

    def uploader() -> None:  # the only writer: each serial is one upload, recorded right after
        n = 1
        try:
            while not stop.is_set():
                upload_wheel(src, "bob/dev", "busy", f"0.{n}", auth)
                record()
                n += 1
        except Exception as e:  # reported by the test below
            errors.append(e)

    thread = threading.Thread(target=uploader)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(pages) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        manifests = [export(src, tmp_path / f"backup{i}") for i in range(2)]
        seen = len(pages)
        while len(pages) < seen + 2 and time.monotonic() < deadline + 60:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    final = max(pages)
    for i, manifest in enumerate(manifests):
        backup, n = tmp_path / f"backup{i}", manifest["serial"]
        assert 0 < n < final  # taken while uploads went on, before and after it
        # the rows are the changelog's state at n: every file added up to n, none after
        added = {c["relpath"] for k in range(n + 1) for c in changelog(src, k)
                 if c["kind"] == "file" and c.get("op") == "add"}
        assert {f["relpath"] for f in exported_rows(backup, "files")} == added
        assert [c["serial"] for c in exported_rows(backup, "changelog")] == list(range(n + 1))
        versions = {r["version"] for r in exported_rows(backup, "releases")}
        assert versions == {f"0.{k}" for k in range(len(versions))}
        # and the imported server answers what the source answered at n, byte for byte
        target = tmp_path / f"restored{i}"
        import_into(target, backup)  # SQLite, whichever engine the source had
        dst = make_server(serverdir=target)
        r = get(dst, "/bob/dev/+simple/busy/", SIMPLE_JSON)
        assert (r.status_code, r.headers.get("ETag"), r.content) == pages[n]
        dst.stop()


def test_killed_export_never_looks_complete_and_a_rerun_completes(make_server, tmp_path):
    src = make_server()
    auth = src.create_user("carol", "pw")
    src.create_index(auth, "dev")
    hashes = {}
    for i in range(60):
        fn, sha = upload_wheel(src, "carol/dev", "bulk", f"1.{i}", auth, module_body=os.urandom(20000).hex())
        hashes[fn] = sha
    before = answers(src, page_paths(src, ["carol/dev"], ["bulk"]))
    dest = tmp_path / "backup"
    tmp = tmp_path / "backup.tmp-export"

    # -v prints a line per copied file into a one-page pipe nobody reads: the export stops
    # part-way through the files, wherever the machine's speed, and is killed there
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    with open(tmp_path / "export.err", "wb") as err:
        proc = subprocess.Popen([DEVPI, "export", "--serverdir", str(src.serverdir), "-v", str(dest)],
                                stdout=write_end, stderr=err)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            copied = list((tmp / "files").glob("*/*")) if (tmp / "files").is_dir() else []
            if len(copied) >= 10:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (tmp_path / "export.err").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        os.close(read_end)
    assert 10 <= len(list((tmp / "files").glob("*/*"))) < 60
    assert not dest.exists() and not (tmp / "manifest.json").exists()
    for half_done in (dest, tmp):  # neither is taken for an export
        r = devpi("import", "--serverdir", str(tmp_path / f"from-{half_done.name}"), str(half_done))
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / f"from-{half_done.name}" / "devpi.sqlite").exists() or _no_users(
            tmp_path / f"from-{half_done.name}")

    # the source lost nothing: every file still downloads with its hash, uploads go on
    for fn, sha in hashes.items():
        r = requests.get(f"{src.url}/carol/dev/+f/{sha[:3]}/{sha[3:16]}/{fn}", timeout=60)
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha
    assert answers(src, list(before)) == before
    upload_wheel(src, "carol/dev", "bulk", "2.0", auth)

    # a second run starts over and completes (into an empty directory made meanwhile, which it replaces)
    dest.mkdir()
    manifest = export(src, dest)
    assert not tmp.exists() and not Path(f"{tmp}.lock").exists()
    assert manifest["counts"]["files"] == 61
    src.stop()
    import_into(tmp_path / "restored", dest)
    dst = make_server(serverdir=tmp_path / "restored")
    assert {k: v for k, v in answers(dst, list(before)).items() if k[0].endswith(".whl")} == \
        {k: v for k, v in before.items() if k[0].endswith(".whl")}
    assert len(get(dst, "/carol/dev/+simple/bulk/", SIMPLE_JSON).json()["files"]) == 61


def _no_users(serverdir: Path) -> bool:
    import sqlite3

    with sqlite3.connect(serverdir / "devpi.sqlite") as conn:
        return conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_mirror_cache_travels_only_when_asked(make_server, tmp_path):
    from support.upstream import Upstream

    with Upstream() as up:
        wheel = up.add_wheel("mirrored", "1.0")
        src = make_server(mirror_url=up.url)
        page = get(src, "/root/pypi/+simple/mirrored/", SIMPLE_JSON)
        assert page.status_code == 200, page.text
        [link] = page.json()["files"]
        file_path = requests.compat.urljoin("/root/pypi/+simple/mirrored/", link["url"].split("#")[0])
        r = get(src, file_path, "*/*")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == wheel.sha256
        src.stop()  # the mirror's cache writes are flushed; an export of a stopped server is fine too
        with_cache = export(src, tmp_path / "with-cache", "--include-mirror-cache")
        without = export(src, tmp_path / "without-cache")
    assert with_cache["tables"]["mirror_files"] == 1 and with_cache["tables"]["mirror_pages"] >= 1
    assert "mirror_files" not in without["tables"]
    assert with_cache["counts"]["blobs"] > without["counts"]["blobs"]
    # upstream is gone now: only the import that brought the cache along still has the file
    for name, expected in (("with-cache", 200), ("without-cache", None)):
        import_into(tmp_path / f"restored-{name}", tmp_path / name)
        dst = make_server(serverdir=tmp_path / f"restored-{name}", mirror_url=up.url)
        r = get(dst, file_path, "*/*")
        if expected == 200:
            assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == wheel.sha256
        else:
            assert r.status_code != 200
        dst.stop()


@pytest.mark.parametrize("damage", ["missing", "rotten"])
def test_export_fails_clearly_when_a_named_blob_is_gone_or_rotten(make_server, tmp_path, damage):
    src = make_server()
    auth = src.create_user("dave", "pw")
    src.create_index(auth, "dev")
    _, sha = upload_wheel(src, "dave/dev", "gone", "1.0", auth)
    blob = src.serverdir / "blobs" / sha[:2] / sha
    if damage == "missing":
        blob.unlink()
    else:
        blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    dest = tmp_path / "backup"
    r = devpi("export", "--serverdir", str(src.serverdir), str(dest))
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("devpi export: error: blob " + sha) and len(r.stderr.splitlines()) == 1, r.stderr
    assert ("missing" if damage == "missing" else "does not match its hash") in r.stderr
    assert not dest.exists() and not (tmp_path / "backup.tmp-export").exists()


def test_every_table_is_exported_or_left_out_on_purpose():
    """A table added to the schema later must be placed: exported (in the order of its foreign
    keys) or named as left out with the reason; otherwise a backup would silently lose it."""
    from devpi.server.ops.export_format import ALL_TABLES, NOT_EXPORTED
    from devpi.server.store import schema

    assert set(ALL_TABLES).isdisjoint(NOT_EXPORTED)
    assert set(schema.metadata.tables) == set(ALL_TABLES) | NOT_EXPORTED
