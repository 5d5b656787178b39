"""A hostile devpi-server 6 export given to ``devpi import``.

The export is made here the way devpi-server 6.20.3's ``devpi-export`` lays it out
(dataindex.json and the files), then spoiled one way per test: paths leading out of the
export, bytes that do not match their recorded hash, JSON that is broken, of the wrong shape
or absurdly large. Every one must end in one readable error line (no traceback, exit 1)
and leave the target as empty as it was: no rows, no blobs, and the same command works once
the export is mended.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.dists import sdist_bytes, wheel_bytes


def make_export(directory: Path) -> dict[str, Any]:
    """A small, valid export: root, alice, alice/dev with one release (wheel + sdist)."""
    files = []
    for filename, data in (wheel_bytes("pkg-x", "1.0"), sdist_bytes("pkg-x", "1.0")):
        relpath = f"alice/dev/pkg-x/1.0/{filename}"
        (directory / relpath).parent.mkdir(parents=True, exist_ok=True)
        (directory / relpath).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        files.append({"version": "1.0", "type": "releasefile", "projectname": "pkg-x", "relpath": relpath,
                      "entrymapping": {"last_modified": "Mon, 07 Dec 2026 15:52:06 GMT", "hash_spec": f"sha256={sha}",
                                       "hashes": {"sha256": sha, "md5": hashlib.md5(data).hexdigest()},
                                       "project": "pkg-x", "version": "1.0"},
                      "log": [{"what": "upload", "who": "alice", "when": [2026, 12, 7, 15, 52, 6], "dst": "alice/dev"}]})
    data = {
        "dumpversion": "2", "pythonversion": [3, 11, 7, "final", 0], "devpi_server": "6.20.3",
        "users": {"root": {"pwhash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "username": "root"},
                  "alice": {"pwhash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "username": "alice",
                            "email": "alice@example.org"}},
        "indexes": {
            "root/pypi": {"indexconfig": {"type": "mirror", "volatile": False, "mirror_url": "http://127.0.0.1:9/simple/"}},
            "alice/dev": {"indexconfig": {"type": "stage", "bases": ["root/pypi"], "volatile": True,
                                          "acl_upload": ["alice"]},
                          "projects": {"pkg-x": {"1.0": {"name": "pkg-x", "version": "1.0", "summary": "x"}}},
                          "files": files},
        },
    }
    write_index(directory, data)
    return data


def write_index(directory: Path, data: Any) -> None:
    (directory / "dataindex.json").write_text(json.dumps(data))


def devpi_import(serverdir: Path, export: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devpi.client", "import", "--serverdir", str(serverdir),
                           "--root-passwd", "pw", str(export)], capture_output=True, text=True, timeout=120)


def first_file(data: dict) -> dict:
    return data["indexes"]["alice/dev"]["files"][0]


def _relpath(value: str) -> Callable[[Path, dict], None]:
    def spoil(export: Path, data: dict) -> None:
        first_file(data)["relpath"] = value
    return spoil


def _outside(export: Path, data: dict) -> None:
    outside = export.parent / "outside.whl"
    outside.write_bytes(b"secret")
    first_file(data)["relpath"] = "../outside.whl"


def _symlink_out(export: Path, data: dict) -> None:
    (export / "alice" / "link.whl").symlink_to("/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd")
    first_file(data)["relpath"] = "alice/link.whl"


def _changed_bytes(export: Path, data: dict) -> None:
    path = export / first_file(data)["relpath"]
    path.write_bytes(path.read_bytes() + b"\0")


def _md5_mismatch(export: Path, data: dict) -> None:
    first_file(data)["entrymapping"]["hashes"]["md5"] = "0" * 32


def _sha_in_spec_only(export: Path, data: dict) -> None:
    mapping = first_file(data)["entrymapping"]
    mapping["hashes"] = {}
    mapping["hash_spec"] = "sha256=" + "1" * 64


def _spec_disagrees(export: Path, data: dict) -> None:
    first_file(data)["entrymapping"]["hash_spec"] = "sha256=" + "1" * 64  # "hashes" keeps the true one


def _huge_version(export: Path, data: dict) -> None:
    first_file(data)["version"] = "1." * 50_000


def _version_path(export: Path, data: dict) -> None:
    data["indexes"]["alice/dev"]["projects"]["pkg-x"]["../../x"] = {"name": "pkg-x"}


def _garbage_user(export: Path, data: dict) -> None:
    data["users"]["../../etc"] = {"pwhash": "x"}


def _not_hex(export: Path, data: dict) -> None:
    first_file(data)["entrymapping"]["hashes"]["sha256"] = "<script>" * 10


def _huge_description(export: Path, data: dict) -> None:
    data["indexes"]["alice/dev"]["projects"]["pkg-x"]["1.0"]["description"] = "x" * (5 << 20)


def _files_not_list(export: Path, data: dict) -> None:
    data["indexes"]["alice/dev"]["files"] = {"a": 1}


def _unknown_type(export: Path, data: dict) -> None:
    first_file(data)["type"] = "../../evil"


def _index_of_missing_user(export: Path, data: dict) -> None:
    data["indexes"]["mallory/x"] = {"indexconfig": {"type": "stage"}}


def _bad_project(export: Path, data: dict) -> None:
    first_file(data)["projectname"] = "../x"


def _twice(export: Path, data: dict) -> None:
    files = data["indexes"]["alice/dev"]["files"]
    files.append(dict(files[0]))


def _user_twice_by_case(export: Path, data: dict) -> None:
    data["users"]["Alice"] = {"pwhash": "x"}


SPOILERS: dict[str, Callable[[Path, dict], None]] = {
    "dotdot": _relpath("alice/../../outside.whl"),
    "parent": _outside,
    "absolute": _relpath("/etc/passwd"),
    "backslash": _relpath("alice\\..\\..\\x.whl"),
    "symlink-out": _symlink_out,
    "missing": _relpath("alice/dev/nothing.whl"),
    "changed-bytes": _changed_bytes,
    "md5-mismatch": _md5_mismatch,
    "spec-mismatch": _sha_in_spec_only,
    "spec-disagrees": _spec_disagrees,
    "huge-version": _huge_version,
    "version-path": _version_path,
    "garbage-user": _garbage_user,
    "hash-not-hex": _not_hex,
    "huge-description": _huge_description,
    "files-not-list": _files_not_list,
    "unknown-type": _unknown_type,
    "index-without-user": _index_of_missing_user,
    "bad-project": _bad_project,
    "file-twice": _twice,
    "user-twice-by-case": _user_twice_by_case,
}


def assert_refused(r: subprocess.CompletedProcess, serverdir: Path) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devpi import: error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert not serverdir.exists() or not any(serverdir.iterdir())  # no rows, no blobs
    return lines[0]


@pytest.mark.parametrize("name", sorted(SPOILERS))
def test_spoiled_export_refused_in_one_line_leaving_nothing(tmp_path, name):
    export = tmp_path / "export"
    data = make_export(export)
    SPOILERS[name](export, data)
    write_index(export, data)
    serverdir = tmp_path / "server"
    line = assert_refused(devpi_import(serverdir, export), serverdir)
    assert "secret" not in line
    if name in ("changed-bytes", "md5-mismatch", "spec-mismatch"):
        assert "the export recorded" in line


@pytest.mark.parametrize("body", [b'{"users": {', b"\xff\xfe{}", b"[1, 2]", b"[" * 200_000 + b"]" * 200_000,
                                  b'{"dumpversion": "99", "users": {}, "indexes": {}}',
                                  b'{"dumpversion": "2", "users": [], "indexes": {}}'],
                         ids=["truncated", "not-utf8", "a-list", "deep", "dumpversion", "users-a-list"])
def test_malformed_dataindex_refused(tmp_path, body):
    export = tmp_path / "export"
    make_export(export)
    (export / "dataindex.json").write_bytes(body)
    serverdir = tmp_path / "server"
    assert_refused(devpi_import(serverdir, export), serverdir)


def test_refused_then_mended_export_imports_into_the_same_dir(tmp_path):
    export = tmp_path / "export"
    data = make_export(export)
    good = (export / first_file(data)["relpath"]).read_bytes()
    _changed_bytes(export, data)
    serverdir = tmp_path / "server"
    assert_refused(devpi_import(serverdir, export), serverdir)
    (export / first_file(data)["relpath"]).write_bytes(good)
    r = devpi_import(serverdir, export)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 users, 2 indexes, 1 projects, 1 releases, 2 release files" in r.stdout


def test_bad_doc_zip_and_misnamed_file_left_out_with_notes(tmp_path):
    """What an upload here would have refused is left out, each with a note; the rest comes in."""
    export = tmp_path / "export"
    data = make_export(export)
    docs = io.BytesIO()
    with zipfile.ZipFile(docs, "w") as zf:
        zf.writestr("../../escape.html", "<script>alert(1)</script>")
    (export / "alice/dev/pkg-x-1.0.doc.zip").write_bytes(docs.getvalue())
    files = data["indexes"]["alice/dev"]["files"]
    sha = hashlib.sha256(docs.getvalue()).hexdigest()
    files.append({"version": "1.0", "type": "doczip", "projectname": "pkg-x", "relpath": "alice/dev/pkg-x-1.0.doc.zip",
                  "entrymapping": {"hashes": {"sha256": sha}}, "log": []})
    other, content = wheel_bytes("other-thing", "1.0")
    (export / "alice/dev/pkg-x/1.0" / other).write_bytes(content)
    files.append({**files[0], "relpath": f"alice/dev/pkg-x/1.0/{other}",
                  "entrymapping": {"hashes": {"sha256": hashlib.sha256(content).hexdigest()}}})
    write_index(export, data)
    r = devpi_import(tmp_path / "server", export)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 release files, 0 doc zips" in r.stdout
    assert "note: index alice/dev: doc zip pkg-x-1.0.doc.zip refused: " in r.stdout
    assert f"note: index alice/dev: release file left out: filename '{other}' does not belong" in r.stdout


def test_oversized_dataindex_refused_without_reading_it(tmp_path, monkeypatch):
    """The size is checked before the file is read (a sparse file: no disk used)."""
    export = tmp_path / "export"
    make_export(export)
    with open(export / "dataindex.json", "r+b") as f:
        f.truncate(600 << 20)
    serverdir = tmp_path / "server"
    line = assert_refused(devpi_import(serverdir, export), serverdir)
    assert "more than the" in line


def test_target_outside_the_export_is_untouched(tmp_path):
    export = tmp_path / "export"
    data = make_export(export)
    _outside(export, data)
    write_index(export, data)
    assert_refused(devpi_import(tmp_path / "server", export), tmp_path / "server")
    assert (export.parent / "outside.whl").read_bytes() == b"secret"
    shutil.rmtree(export)


@pytest.mark.parametrize("pwhash, form", [
    # what a crafted export may demand of every login: 4 GiB of memory, or a thousand passes
    ("$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "argon2 beyond this server's cost bounds"),
    ("$argon2id$v=19$m=65536,t=1000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "argon2 beyond this server's cost bounds"),
    ("not-a-hash", "unknown"),
])
def test_password_hash_beyond_bounds_is_not_carried(tmp_path, pwhash, form):
    """A carried argon2 hash is derived at every login with the cost it names: one the server
    would not choose is replaced by an unusable one, with the note saying how to set a new
    password, and the rest of the export comes in."""
    from support.server import ServerProcess

    export = tmp_path / "export"
    data = make_export(export)
    data["users"]["alice"]["pwhash"] = pwhash
    write_index(export, data)
    r = devpi_import(tmp_path / "server", export)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"note: user 'alice': password not carried over ({form} hash" in r.stdout
    s = ServerProcess(tmp_path / "server", root_password="pw").start()
    try:
        assert s.api("POST", "/+login", json={"user": "alice", "password": "anything"}).status_code == 401
        root = s.login("root", "pw")
        assert s.api("PATCH", "/alice", json={"password": "alice-new"}, auth=root).status_code == 200
        s.login("alice", "alice-new")
    finally:
        s.stop()
