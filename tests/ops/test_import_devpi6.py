"""``devpi import`` of what the original devpi-server 6.20.3's ``devpi-export`` writes.

Once per module a real devpi-server 6 is filled over HTTP (users, a stage with bases, releases
with a wheel and an sdist each, a doc zip, a test result, a file cached by its root/pypi mirror
from the local upstream) and exported with and without ``--include-mirrored-files``. Each test
imports an export into a fresh server dir with our ``devpi`` command, starts our server on it,
and checks what clients see: pip installs, logins, index configs, docs, test results.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from devpi6_helpers import Devpi6
from support.dists import sdist_bytes, wheel_bytes
from support.pipinstall import installed, pip_install
from support.server import ServerProcess

pytestmark = pytest.mark.interop  # drives the original devpi-server from its own venv

ROOT_PW = "root6-pw"
NEW_ROOT_PW = "root-after-import"
DOC_MARKER = "docs of pkg-a 2.0 from devpi-server 6"
TOX_REPORT = {"reportversion": "1", "host": "ci-7", "platform": "linux", "installpkg": {"basename": "x"},
              "testenvs": {"py311": {"test": [{"retcode": 0, "command": ["pytest"], "output": "1 passed"}]}}}
# index -> [(project, version, metadata given at upload)]
RELEASES = {
    "alice/base": [("pkg-a", "1.0", {"summary": "pkg-a one", "requires_python": ">=3.8"})],
    "alice/dev": [("pkg-a", "2.0", {"summary": "pkg-a two"}), ("pkg-b", "0.1", {"summary": "pkg-b"})],
}


@dataclass
class World:
    exports: dict[bool, Path]  # with mirrored files? -> the export directory
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # filename -> (index, bytes)
    mirrored: tuple[str, bytes] = ("", b"")  # (filename, bytes) of the file root/pypi cached
    configs: dict[str, dict] = field(default_factory=dict)  # index -> devpi-server 6's config


@pytest.fixture(scope="module")
def world(tmp_path_factory, upstream) -> World:
    base = tmp_path_factory.mktemp("devpi6")
    upfile = upstream.add_wheel("up-thing", "1.0")
    d6 = Devpi6(base / "server6", ROOT_PW)
    d6.init()
    d6.start()
    world = World(exports={})
    try:
        root = d6.login("root", ROOT_PW)
        assert d6.api("PATCH", "/root/pypi", json=[f"mirror_url={upstream.url}"], auth=root).status_code == 200
        for user, pw in (("alice", "alice-pw"), ("bob", "bob-pw")):
            r = d6.api("PUT", f"/{user}", json={"password": pw, "email": f"{user}@example.org",
                                                 "title": user.title()})
            assert r.status_code == 201, r.text
        alice = d6.login("alice", "alice-pw")
        r = d6.api("PUT", "/alice/base", auth=alice, json={
            "volatile": False, "title": "Base", "description": "released things", "custom_data": {"team": 7}})
        assert r.status_code == 200, r.text
        r = d6.api("PUT", "/alice/dev", auth=alice, json={
            "bases": ["alice/base", "root/pypi"], "mirror_whitelist": ["up-thing"], "acl_upload": ["alice", "bob"],
            "acl_toxresult_upload": ["alice"]})
        assert r.status_code == 200, r.text
        for index, releases in RELEASES.items():
            for name, version, md in releases:
                for filename, data in (wheel_bytes(name, version), sdist_bytes(name, version)):
                    d6.upload(index, alice, filename, data, name=name, version=version, **md)
                    world.files[filename] = (index, data)
        docs = io.BytesIO()
        with zipfile.ZipFile(docs, "w") as zf:
            zf.writestr("index.html", f"<html><body>{DOC_MARKER}</body></html>")
        d6.upload_docs("alice/dev", alice, "pkg-a", "2.0", docs.getvalue())
        r = d6.api("POST", "/alice/dev/+f/" + _plus_f(world, "pkg_a-2.0-py3-none-any.whl"), auth=alice,
                   json=TOX_REPORT)
        assert r.status_code == 200, r.text
        # root/pypi caches a file when pip installs through it; the store is committed after the
        # answer, so wait for devpi-server 6's serial to move past it before stopping the server
        before = d6.serial()
        r = pip_install(f"{d6.url}/root/pypi/+simple/", base / "pip6", "up-thing")
        assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.monotonic() + 20
        while d6.serial() <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert d6.serial() > before, "devpi-server 6 did not store the mirrored file"
        world.mirrored = (upfile.filename, upfile.content)
        for index in ("root/pypi", "alice/base", "alice/dev"):
            world.configs[index] = d6.api("GET", f"/{index}").json()["result"]
    finally:
        d6.stop()
    for mirrored in (False, True):
        world.exports[mirrored] = d6.export(base / f"export-{'mirrored' if mirrored else 'plain'}", mirrored=mirrored)
    return world


def _plus_f(world: World, filename: str) -> str:
    sha = hashlib.sha256(world.files[filename][1]).hexdigest()
    return f"{sha[:3]}/{sha[3:16]}/{filename}"


def devpi_import(serverdir: Path, export: Path, *args: str) -> subprocess.CompletedProcess:
    """Our CLI, as an admin runs it."""
    return subprocess.run([sys.executable, "-m", "devpi.client", "import", "--serverdir", str(serverdir), *args,
                           str(export)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def imported(world, tmp_path_factory) -> tuple[ServerProcess, str]:
    """Our server on the import of the plain export (and the import's output)."""
    serverdir = tmp_path_factory.mktemp("ours") / "server"
    r = devpi_import(serverdir, world.exports[False], "--root-passwd", NEW_ROOT_PW)
    assert r.returncode == 0, r.stdout + r.stderr
    s = ServerProcess(serverdir, root_password=NEW_ROOT_PW).start()
    yield s, r.stdout
    s.stop()


def test_summary_counts_and_notes(imported):
    _, out = imported
    assert ("imported from devpi-server 6.20.3 export: 3 users, 3 indexes, 3 projects, 3 releases, "
            "6 release files, 1 doc zips, 1 test results") in out
    assert "note: user 'root': password set from --root-passwd" in out
    # alice's and bob's argon2 hashes are carried: nothing to say about them
    assert "user 'alice'" not in out and "user 'bob'" not in out


def test_pip_installs_every_release_with_the_same_bytes(imported, world, tmp_path):
    s, _ = imported
    for index, releases in RELEASES.items():
        for name, version, _md in releases:
            target = tmp_path / f"{index.replace('/', '-')}-{name}"
            r = pip_install(f"{s.url}/{index}/+simple/", target, "--no-deps", "--only-binary", ":all:",
                            f"{name}=={version}")
            assert r.returncode == 0, r.stdout + r.stderr
            assert installed(target) == {name: version}
    # every file (wheels and sdists) is on the simple pages with the bytes devpi-server 6 had
    for filename, (index, data) in world.files.items():
        project = filename.split("-")[0].replace("_", "-")
        page = s.api("GET", f"/{index}/+simple/{project}/",
                     headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
        (link,) = [f for f in page["files"] if f["filename"] == filename]
        assert link["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        r = s.api("GET", f"/{index}/+f/{_plus_f(world, filename)}", headers={"Accept": "*/*"})
        assert r.status_code == 200 and r.content == data


def test_release_metadata_carried(imported):
    s, _ = imported
    md = s.api("GET", "/alice/base/pkg-a/1.0").json()["result"]
    assert md["summary"] == "pkg-a one" and md["requires_python"] == ">=3.8"
    page = s.api("GET", "/alice/base/+simple/pkg-a/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert {f.get("requires-python") for f in page.json()["files"]} == {">=3.8"}


def test_logins_root_new_password_others_keep_theirs(imported):
    """devpi-server 6's argon2 hashes are carried: alice and bob log in with the passwords they
    had there (and only with those); --root-passwd replaced root's."""
    s, _ = imported
    assert s.api("POST", "/+login", json={"user": "root", "password": ROOT_PW}).status_code == 401
    root = s.login("root", NEW_ROOT_PW)
    assert s.api("POST", "/+login", json={"user": "alice", "password": "bob-pw"}).status_code == 401
    alice = s.login("alice", "alice-pw")
    s.login("bob", "bob-pw")
    assert s.api("GET", "/alice").json()["result"]["email"] == "alice@example.org"
    # what she does with the login: upload to her index (basic auth with the carried password too)
    assert s.api("GET", "/alice/dev", auth=alice).status_code == 200
    r = s.api("PATCH", "/bob", json={"password": "bob-new"}, auth=root)
    assert r.status_code == 200, r.text
    s.login("bob", "bob-new")


def test_index_configs_match(imported, world):
    s, _ = imported
    keys = ("type", "bases", "volatile", "acl_upload", "acl_toxresult_upload", "mirror_whitelist",
            "mirror_whitelist_inheritance", "title", "description", "custom_data", "mirror_url",
            "mirror_web_url_fmt")
    for index, theirs in world.configs.items():
        ours = s.api("GET", f"/{index}").json()["result"]
        for key in keys:
            assert ours.get(key) == theirs.get(key), (index, key)
    assert world.configs["alice/dev"]["bases"] == ["alice/base", "root/pypi"]  # the check above is no no-op
    assert world.configs["alice/base"]["custom_data"] == {"team": 7}


def test_docs_and_toxresults_are_served(imported, world):
    s, _ = imported
    r = s.api("GET", "/alice/dev/pkg-a/2.0/+doc/index.html", headers={"Accept": "text/html"})
    assert r.status_code == 200 and DOC_MARKER in r.text
    links = s.api("GET", "/alice/dev/pkg-a/2.0").json()["result"]["+links"]
    (tox,) = [link for link in links if link["rel"] == "toxresult"]
    assert tox["for_href"].endswith("/alice/dev/+f/" + _plus_f(world, "pkg_a-2.0-py3-none-any.whl"))
    r = s.api("GET", tox["href"][len(s.url):], headers={"Accept": "*/*"})
    assert r.status_code == 200 and r.json() == TOX_REPORT


def test_mirrored_files_served_offline_when_exported(world, tmp_path, upstream):
    """Only the export with --include-mirrored-files brings root/pypi's cached file along."""
    filename, content = world.mirrored
    for mirrored in (True, False):
        serverdir = tmp_path / f"ours-{mirrored}" / "server"
        r = devpi_import(serverdir, world.exports[mirrored], "--root-passwd", NEW_ROOT_PW)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ("mirrored files put into its cache" in r.stdout) is mirrored
        s = ServerProcess(serverdir, root_password=NEW_ROOT_PW, args=("--offline",)).start()
        asked = upstream.count()
        try:
            target = tmp_path / f"pip-{mirrored}"
            r = pip_install(f"{s.url}/alice/dev/+simple/", target, "up-thing")
            if mirrored:
                assert r.returncode == 0, r.stdout + r.stderr
                assert installed(target) == {"up-thing": "1.0"}
                sha = hashlib.sha256(content).hexdigest()
                r = s.api("GET", f"/root/pypi/+f/{sha[:3]}/{sha[3:16]}/{filename}", headers={"Accept": "*/*"})
                assert r.status_code == 200 and r.content == content
            else:
                assert r.returncode != 0
        finally:
            s.stop()
        assert upstream.count() == asked  # offline: the upstream was never asked


def test_refuses_a_target_that_holds_a_server(imported, world):
    s, _ = imported
    before = sorted(p.name for p in s.serverdir.iterdir())
    r = devpi_import(s.serverdir, world.exports[False], "--root-passwd", "x")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"devpi import: error: server dir {s.serverdir} is not empty; "
                                             "import only into a fresh one"]
    assert sorted(p.name for p in s.serverdir.iterdir()) == before
    s.login("root", NEW_ROOT_PW)  # the server's state is untouched


def test_without_root_passwd_root_keeps_its_password(world, tmp_path):
    serverdir = tmp_path / "server"
    r = devpi_import(serverdir, world.exports[False])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note:" not in r.stdout
    s = ServerProcess(serverdir, root_password=ROOT_PW).start()
    try:
        s.login("root", ROOT_PW)
        s.login("alice", "alice-pw")
    finally:
        s.stop()


@pytest.mark.postgresql
def test_import_into_postgresql(world, tmp_path, pg_cluster):
    """The same rows through PostgreSQL: the import writes with the store's own statements."""
    url = pg_cluster.new_database()
    serverdir = tmp_path / "server"
    r = devpi_import(serverdir, world.exports[True], "--storage", url, "--root-passwd", NEW_ROOT_PW)
    assert r.returncode == 0, r.stdout + r.stderr
    s = ServerProcess(serverdir, root_password=NEW_ROOT_PW, storage=url, args=("--offline",)).start()
    try:
        s.login("root", NEW_ROOT_PW)
        for filename, (index, data) in world.files.items():
            r = s.api("GET", f"/{index}/+f/{_plus_f(world, filename)}", headers={"Accept": "*/*"})
            assert r.status_code == 200 and r.content == data
        target = tmp_path / "pip"
        r = pip_install(f"{s.url}/alice/dev/+simple/", target, "up-thing")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        s.stop()
    r = devpi_import(tmp_path / "again", world.exports[True], "--storage", url, "--root-passwd", "x")
    assert r.returncode == 1 and "already holds a server" in r.stderr
