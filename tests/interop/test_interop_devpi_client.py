"""The original devpi-client 7.x, from its own venv, against our server.

Its `devpi` command is called by absolute path with a private --clientdir and
HOME, so neither our own `devpi` nor the user's client state is involved.
Each test sets up its own user and indexes through the HTTP API (fast) and
then uses the real client for the operation under test.
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
import requests
from interop.helpers import output, run, sha256, unique, write_project
from support.dists import write_sdist, write_wheel

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
TOXRESULT = {"reportversion": "1", "toxversion": "4.67.15", "platform": "linux", "host": "ci",
             "testenvs": {"py": {"python": {"version": "3.11.7 (main)"},
                                 "test": [{"command": ["pytest"], "output": "ok", "retcode": 0}],
                                 "setup": [{"command": ["pip"], "output": "", "retcode": 0}]}}}


def make_doczip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("index.html", "<html><body><h1>Docs</h1></body></html>")
    return path


@pytest.fixture
def alice(iserver):
    """A fresh user with a volatile `dev` and a non-volatile `prod` index: (name, password)."""
    name = unique("alice")
    auth = iserver.create_user(name, "alicepw")
    iserver.create_index(auth, "dev")
    iserver.create_index(auth, "prod", volatile=False)
    return name, "alicepw"


def project_json(server, index: str, project: str) -> dict:
    r = server.api("GET", f"/{index}/{project}")
    assert r.status_code == 200, r.text
    return r.json()["result"]


def simple_files(server, index: str, project: str) -> dict[str, str]:
    r = server.api("GET", f"/{index}/+simple/{project}/", headers=SIMPLE_JSON)
    assert r.status_code == 200, r.text
    return {f["filename"]: f["hashes"]["sha256"] for f in r.json()["files"]}


# -- discovery and auth -------------------------------------------------------------------------
@pytest.mark.compat("devpi-client", "use")
def test_use(devpi, iserver, alice):
    user, pw = alice
    out = output(devpi("use", iserver.url))
    assert f"using server: {iserver.url}/ (not logged in)" in out
    out = output(devpi("use", f"{iserver.url}/{user}/dev"))
    assert f"current devpi index: {iserver.url}/{user}/dev (not logged in)" in out
    assert "server-keyvalue-parsing" in out
    out = output(devpi("use", "-l"))
    assert f"{user}/dev" in out and f"{user}/prod" in out and "root/pypi" in out
    current = json.loads((devpi.clientdir / "current.json").read_text())
    assert current["simpleindex"] == f"{iserver.url}/{user}/dev/+simple/"
    assert current["pypisubmit"] == f"{iserver.url}/{user}/dev/"
    proc = devpi("use", f"{user}/nosuchindex", check=False)
    assert proc.returncode != 0 and "404" in output(proc)


@pytest.mark.compat("devpi-client", "login")
def test_login(devpi, iserver, alice):
    user, pw = alice
    devpi("use", f"{iserver.url}/{user}/dev")
    proc = devpi("login", user, "--password", "wrong", check=False)
    assert proc.returncode != 0 and "could not be authenticated" in output(proc)
    out = output(devpi("login", user, "--password", pw))
    assert f"logged in '{user}'" in out and "credentials valid for" in out
    out = output(devpi("use"))
    assert f"(logged in as {user})" in out
    auth = json.loads((devpi.clientdir / "auth.json").read_text())
    assert auth  # the token is stored per root URL


@pytest.mark.compat("devpi-client", "logout")
def test_logout(devpi, iserver, alice, tmp_path):
    user, pw = alice
    devpi.login(iserver, user, pw, f"{user}/dev")
    assert "login information deleted" in output(devpi("logout"))
    assert "(not logged in)" in output(devpi("use"))
    wheel = write_wheel(tmp_path, "after-logout", "1.0")
    proc = devpi("upload", wheel, check=False)
    assert proc.returncode != 0 and "401" in output(proc)
    assert iserver.api("GET", f"/{user}/dev/after-logout").status_code == 404


# -- users and indexes ---------------------------------------------------------------------------
@pytest.mark.compat("devpi-client", "user -c")
def test_user_create(devpi, iserver):
    name = unique("bob")
    devpi("use", iserver.url)
    out = output(devpi("user", "-c", name, "password=bobpw", "email=bob@example.com"))
    assert f"user created: {name}" in out
    r = iserver.api("GET", f"/{name}")
    assert r.status_code == 200 and r.json()["result"]["email"] == "bob@example.com"
    assert name in devpi("user", "-l").stdout.split()
    proc = devpi("user", "-c", name, "password=other", check=False)
    assert proc.returncode != 0 and "409" in output(proc)
    assert f"logged in '{name}'" in output(devpi("login", name, "--password", "bobpw"))


@pytest.mark.compat("devpi-client", "index -c")
def test_index_create(devpi, iserver, alice):
    user, pw = alice
    devpi.login(iserver, user, pw)
    out = output(devpi("index", "-c", "staging", f"bases={user}/dev", "volatile=False"))
    assert f"{iserver.url}/{user}/staging" in out and f"bases={user}/dev" in out
    cfg = iserver.api("GET", f"/{user}/staging").json()["result"]
    assert cfg["type"] == "stage" and cfg["bases"] == [f"{user}/dev"] and cfg["volatile"] is False
    assert cfg["acl_upload"] == [user]
    proc = devpi("index", "-c", "staging", check=False)
    assert proc.returncode != 0 and "409" in output(proc)
    proc = devpi("index", "-c", "broken", "bases=nobody/nothing", check=False)
    assert proc.returncode != 0 and "400" in output(proc)


@pytest.mark.compat("devpi-client", "index modify")
def test_index_modify(devpi, iserver, alice):
    user, pw = alice
    devpi.login(iserver, user, pw)
    devpi("index", f"{user}/dev", "title=Dev index", "mirror_whitelist+=foo", "mirror_whitelist+=bar",
          f"bases={user}/prod")
    cfg = iserver.api("GET", f"/{user}/dev").json()["result"]
    assert cfg["title"] == "Dev index" and cfg["mirror_whitelist"] == ["foo", "bar"]
    assert cfg["bases"] == [f"{user}/prod"]
    devpi("index", f"{user}/dev", "mirror_whitelist-=foo", "title-=", "volatile=False")
    cfg = iserver.api("GET", f"/{user}/dev").json()["result"]
    assert cfg["mirror_whitelist"] == ["bar"] and "title" not in cfg and cfg["volatile"] is False
    proc = devpi("index", f"{user}/dev", "nosuchkey=1", check=False)
    assert proc.returncode != 0 and "400" in output(proc)


@pytest.mark.compat("devpi-client", "index -l")
def test_index_list(devpi, iserver, alice):
    user, pw = alice
    devpi.login(iserver, user, pw)
    listed = devpi("index", "-l").stdout.split()
    assert sorted(listed) == [f"{user}/dev", f"{user}/prod"]


@pytest.mark.compat("devpi-client", "index --delete")
def test_index_delete(devpi, iserver, alice):
    user, pw = alice
    devpi.login(iserver, user, pw)
    assert "index deleted" in output(devpi("index", "--delete", "-y", f"{user}/dev"))
    assert iserver.api("GET", f"/{user}/dev").status_code == 404
    proc = devpi("index", "--delete", "-y", f"{user}/prod", check=False)
    assert proc.returncode != 0 and "403" in output(proc)  # non-volatile
    assert iserver.api("GET", f"/{user}/prod").status_code == 200


@pytest.mark.compat("devpi-client", "user -m")
def test_user_modify_and_delete(devpi, iserver):
    name = unique("mod")
    iserver.create_user(name, "oldpassword")
    devpi.login(iserver, name, "oldpassword")
    devpi("user", "-m", name, "title=Modified", "email=m@example.com")
    cfg = iserver.api("GET", f"/{name}").json()["result"]
    assert cfg["title"] == "Modified" and cfg["email"] == "m@example.com"
    out = output(devpi("user", name))
    assert "title=Modified" in out and "password" not in out
    devpi("user", "-m", name, "password=newpassword")
    proc = devpi("login", name, "--password", "oldpassword", check=False)
    assert proc.returncode != 0
    devpi("login", name, "--password", "newpassword")
    assert "deleted" in output(devpi("user", "--delete", "-y", name))
    assert iserver.api("GET", f"/{name}").status_code == 404


# -- upload, list, getjson ------------------------------------------------------------------------
@pytest.mark.compat("devpi-client", "upload checkout")
def test_upload_checkout(devpi, iserver, alice, tmp_path):
    user, pw = alice
    devpi.login(iserver, user, pw, f"{user}/dev")
    proj = write_project(tmp_path / "checkout", "co-pkg", "2.0")
    (proj / "untracked.txt").write_text("not part of the checkout")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    run([*git, "init", "-q"], cwd=proj)
    run([*git, "add", "pyproject.toml", "co_pkg/__init__.py"], cwd=proj)
    run([*git, "commit", "-q", "-m", "init"], cwd=proj)
    # --no-isolation: setuptools and wheel come from the client's venv, so no index is needed to build.
    out = output(devpi("upload", "--no-isolation", cwd=proj))
    assert "file_upload of co_pkg-2.0.tar.gz" in out and "file_upload of co_pkg-2.0-py3-none-any.whl" in out
    built = {p.name: sha256(p) for p in (proj / "dist").iterdir()}
    assert simple_files(iserver, f"{user}/dev", "co-pkg") == built
    data = project_json(iserver, f"{user}/dev", "co-pkg")["2.0"]
    assert data["summary"] == "co-pkg: a project of the interop tests"
    assert data["requires_python"] == ">=3.8"


@pytest.mark.compat("devpi-client", "upload files")
def test_upload_files(devpi, iserver, alice, tmp_path):
    user, pw = alice
    devpi.login(iserver, user, pw, f"{user}/prod")
    wheel = write_wheel(tmp_path, "files-pkg", "1.0", requires_dist=["six"], summary="s")
    sdist = write_sdist(tmp_path, "files-pkg", "1.0", summary="s")
    out = output(devpi("upload", wheel, sdist))
    assert out.count("file_upload of") == 2
    assert simple_files(iserver, f"{user}/prod", "files-pkg") == {wheel.name: sha256(wheel),
                                                                   sdist.name: sha256(sdist)}
    # identical re-upload to a non-volatile index is fine; different bytes are refused
    devpi("upload", wheel)
    (tmp_path / "other").mkdir()
    other = write_wheel(tmp_path / "other", "files-pkg", "1.0", summary="different")
    proc = devpi("upload", other, check=False)
    assert proc.returncode != 0 and "409" in output(proc)


@pytest.mark.compat("devpi-client", "upload docs")
def test_upload_docs(devpi, iserver, alice, tmp_path):
    user, pw = alice
    assert iserver.upload(f"{user}/dev", write_wheel(tmp_path, "doc-pkg", "1.0"), alice).status_code == 200
    doczip = make_doczip(tmp_path / "doc-pkg-1.0.doc.zip")
    devpi.login(iserver, user, pw, f"{user}/dev")
    assert "doc_upload of doc-pkg-1.0.doc.zip" in output(devpi("upload", doczip))
    links = project_json(iserver, f"{user}/dev", "doc-pkg")["1.0"]["+links"]
    (doc,) = [link for link in links if link["rel"] == "doczip"]
    assert requests.get(doc["href"], timeout=30).content == doczip.read_bytes()


@pytest.mark.compat("devpi-client", "list")
def test_list(devpi, iserver, alice, tmp_path):
    user, pw = alice
    for version in ("1.0", "1.1"):
        assert iserver.upload(f"{user}/dev", write_wheel(tmp_path, "list-pkg", version), alice).status_code == 200
    assert iserver.upload(f"{user}/dev", write_wheel(tmp_path, "list-other", "0.1"), alice).status_code == 200
    devpi("use", f"{iserver.url}/{user}/dev")
    assert devpi("list").stdout.split() == ["list-other", "list-pkg"]
    hrefs = devpi("list", "list-pkg").stdout.split()
    assert [h.rsplit("/", 1)[1] for h in hrefs] == ["list_pkg-1.1-py3-none-any.whl",
                                                   "list_pkg-1.0-py3-none-any.whl"]
    assert all(h.startswith(f"{iserver.url}/{user}/dev/+f/") for h in hrefs)
    assert [h.rsplit("/", 1)[1] for h in devpi("list", "list-pkg<1.1").stdout.split()] == [
        "list_pkg-1.0-py3-none-any.whl"]
    failed = {**TOXRESULT, "testenvs": {"py": {**TOXRESULT["testenvs"]["py"], "test": [
        {"command": ["pytest", "-x"], "output": "E   assert 1 == 2", "retcode": 1}]}}}
    r = iserver.api("POST", hrefs[0].removeprefix(iserver.url), json=failed)
    assert r.status_code == 200, r.text
    out = output(devpi("list", "-f", "list-pkg"))
    assert "ci linux py 3.11.7 tests failed" in " ".join(out.split()), out
    assert "pytest -x" in out and "assert 1 == 2" in out


@pytest.mark.compat("devpi-client", "getjson")
def test_getjson(devpi, iserver, alice, tmp_path):
    user, pw = alice
    wheel = write_wheel(tmp_path, "json-pkg", "3.0", requires_python=">=3.8")
    assert iserver.upload(f"{user}/dev", wheel, alice).status_code == 200
    devpi("use", f"{iserver.url}/{user}/dev")
    index = json.loads(devpi("getjson", f"/{user}/dev").stdout)
    assert index["type"] == "indexconfig" and index["result"]["projects"] == ["json-pkg"]
    project = json.loads(devpi("getjson", f"/{user}/dev/json-pkg").stdout)
    assert project["type"] == "projectconfig" and list(project["result"]) == ["3.0"]
    version = json.loads(devpi("getjson", f"/{user}/dev/json-pkg/3.0").stdout)
    assert version["type"] == "versiondata"
    (link,) = version["result"]["+links"]
    assert link["rel"] == "releasefile" and link["hashes"]["sha256"] == sha256(wheel)
    assert link["href"].startswith(f"{iserver.url}/{user}/dev/+f/")
    root = json.loads(devpi("getjson", "/").stdout)
    assert root["type"] == "list:userconfig" and user in root["result"]


# -- push, remove ------------------------------------------------------------------------------------
@pytest.mark.compat("devpi-client", "push")
def test_push(devpi, iserver, alice, tmp_path):
    user, pw = alice
    wheel = write_wheel(tmp_path, "push-pkg", "1.0")
    sdist = write_sdist(tmp_path, "push-pkg", "1.0")
    for f in (wheel, sdist):
        assert iserver.upload(f"{user}/dev", f, alice).status_code == 200
    doczip = make_doczip(tmp_path / "push-pkg-1.0.doc.zip")
    r = requests.post(f"{iserver.url}/{user}/dev/", auth=alice, timeout=60,
                      data={":action": "doc_upload", "name": "push-pkg", "version": "1.0"},
                      files={"content": (doczip.name, doczip.read_bytes())})
    assert r.status_code == 200, r.text
    links = project_json(iserver, f"{user}/dev", "push-pkg")["1.0"]["+links"]
    sdist_href = next(link["href"] for link in links if link["href"].endswith(sdist.name))
    r = iserver.api("POST", sdist_href.removeprefix(iserver.url), json=TOXRESULT)
    assert r.status_code == 200, r.text
    devpi.login(iserver, user, pw, f"{user}/dev")
    out = output(devpi("push", "push-pkg==1.0", f"{user}/prod"))
    assert f"register push-pkg 1.0 -> {user}/prod" in out
    assert out.count("store_releasefile") == 2
    assert "store_doczip" in out and "store_toxresult" in out
    assert simple_files(iserver, f"{user}/prod", "push-pkg") == {wheel.name: sha256(wheel),
                                                                 sdist.name: sha256(sdist)}
    pushed = {link["rel"] for link in project_json(iserver, f"{user}/prod", "push-pkg")["1.0"]["+links"]}
    assert pushed == {"releasefile", "doczip", "toxresult"}
    assert "tests passed" in output(devpi("list", "-t", "--index", f"{user}/prod", "push-pkg"))
    # the same files again: a no-op success on the non-volatile target, as an identical upload
    # (issue 24 finding 10; it was a 409, which made re-running a promotion fail)
    out = output(devpi("push", "push-pkg==1.0", f"{user}/prod"))
    assert "store_" not in out and out.count("skip_identical") == 4, out
    (tmp_path / "other").mkdir()
    other = write_wheel(tmp_path / "other", "push-pkg", "1.0", summary="other bytes")
    assert other.name == wheel.name and iserver.upload(f"{user}/dev", other, alice).status_code == 200
    proc = devpi("push", "push-pkg==1.0", f"{user}/prod", check=False)  # other bytes, same name: conflict
    assert proc.returncode != 0 and "409" in output(proc)
    proc = devpi("push", "push-pkg==9.9", f"{user}/prod", check=False)
    assert proc.returncode != 0
    proc = devpi("push", "push-pkg==1.0", f"{user}/nosuchindex", check=False)
    assert proc.returncode != 0


@pytest.mark.compat("devpi-client", "push to external")
def test_push_to_external_repository(devpi, iserver, alice, make_server, tmp_path):
    user, pw = alice
    wheel = write_wheel(tmp_path, "ext-pkg", "1.0")
    assert iserver.upload(f"{user}/dev", wheel, alice).status_code == 200
    other = make_server()
    other_auth = other.create_user("bob", "bobpw")
    other.create_index(other_auth, "ext")
    pypirc = tmp_path / "pypirc"
    pypirc.write_text(f"[distutils]\nindex-servers = other\n\n[other]\nrepository = {other.url}/bob/ext/\n"
                      f"username = bob\npassword = bobpw\n")
    devpi.login(iserver, user, pw, f"{user}/dev")
    out = output(devpi("push", "--pypirc", pypirc, "ext-pkg==1.0", "pypi:other"))
    assert f"200 upload {user}/dev/+f/" in out, out
    r = other.api("GET", "/bob/ext/+simple/ext-pkg/", headers=SIMPLE_JSON)
    assert r.status_code == 200 and [f["hashes"]["sha256"] for f in r.json()["files"]] == [sha256(wheel)]


@pytest.mark.compat("devpi-client", "remove")
def test_remove(devpi, iserver, alice, tmp_path):
    user, pw = alice
    for index in ("dev", "prod"):
        for version in ("1.0", "2.0"):
            resp = iserver.upload(f"{user}/{index}", write_wheel(tmp_path, "rm-pkg", version), alice)
            assert resp.status_code == 200
    devpi.login(iserver, user, pw, f"{user}/dev")
    devpi("remove", "-y", "rm-pkg==1.0")
    assert list(project_json(iserver, f"{user}/dev", "rm-pkg")) == ["2.0"]
    proc = devpi("remove", "-y", "--index", f"{user}/prod", "rm-pkg==1.0", check=False)
    assert proc.returncode != 0 and "403" in output(proc)
    assert sorted(project_json(iserver, f"{user}/prod", "rm-pkg")) == ["1.0", "2.0"]
    devpi("remove", "-y", "--force", "--index", f"{user}/prod", "rm-pkg==1.0")
    assert list(project_json(iserver, f"{user}/prod", "rm-pkg")) == ["2.0"]
    devpi("use", f"{user}/dev")
    devpi("remove", "-y", "rm-pkg")
    assert iserver.api("GET", f"/{user}/dev/+simple/rm-pkg/").status_code == 404


@pytest.mark.compat("devpi-client", "install")
def test_install(devpi, iserver, alice, tmp_path):
    user, pw = alice
    assert iserver.upload(f"{user}/prod", write_wheel(tmp_path, "inst-dep", "1.0"), alice).status_code == 200
    wheel = write_wheel(tmp_path, "inst-pkg", "1.0", requires_dist=["inst-dep"])
    assert iserver.upload(f"{user}/dev", wheel, alice).status_code == 200
    iserver.api("PATCH", f"/{user}/dev", json=[f"bases={user}/prod"], auth=iserver.login(user, pw))
    venv = tmp_path / "venv"
    run([devpi.env.python, "-m", "virtualenv", "-q", "--no-setuptools", "--no-wheel", venv], env=devpi.environ)
    devpi.login(iserver, user, pw, f"{user}/dev")
    devpi("install", "--venv", venv, "inst-pkg")
    listed = devpi("install", "--venv", venv, "-l").stdout
    assert re.search(r"^inst-pkg\s+1\.0$", listed, re.M) and re.search(r"^inst-dep\s+1\.0$", listed, re.M)


# -- test with toxresult upload ---------------------------------------------------------------------------
@pytest.mark.compat("devpi-client", "test")
def test_test_with_toxresult(devpi, iserver, alice, tmp_path):
    user, pw = alice
    tox_ini = """\
        [tox]
        envlist = py
        [testenv]
        commands = python -c "import tested_pkg; print('version', tested_pkg.__version__)"
        """
    proj = write_project(tmp_path / "tested", "tested-pkg", "1.0", tox_ini=tox_ini, backend="intree")
    run([devpi.env.python, "-m", "build", "--sdist", "--no-isolation", "-o", tmp_path / "dist", proj],
        env=devpi.environ)
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    devpi.login(iserver, user, pw, f"{user}/dev")
    devpi("upload", sdist)
    out = output(devpi("test", "tested-pkg", timeout=600))
    assert "version 1.0" in out, out
    assert "posting tox result data to" in out and "success" in out
    version = project_json(iserver, f"{user}/dev", "tested-pkg")["1.0"]
    (release,) = [link for link in version["+links"] if link["rel"] == "releasefile"]
    results = [link for link in version["+links"] if link["rel"] == "toxresult"]
    assert results and all(link["for_href"] == release["href"] for link in results)
    listed = output(devpi("list", "-t", "tested-pkg"))
    assert "py " in listed and "tests passed" in listed
    assert "tests failed" not in output(devpi("list", "-f", "tested-pkg"))


# -- refresh (needs the mirror) -------------------------------------------------------------------------
@pytest.mark.compat("devpi-client", "refresh")
def test_refresh(devpi, mserver, upstream):
    user = unique("carol")
    auth = mserver.create_user(user, "pw")
    mserver.create_index(auth, "dev", bases="root/pypi")
    name = unique("fresh-pkg")
    upstream.add_wheel(name, "1.0")
    page = f"/{user}/dev/+simple/{name}/"
    r = mserver.api("GET", page, headers=SIMPLE_JSON)
    assert r.status_code == 200, r.text
    assert [f["filename"].split("-")[1] for f in r.json()["files"]] == ["1.0"]
    upstream.add_wheel(name, "1.1")
    devpi("use", f"{mserver.url}/{user}/dev")
    out = output(devpi("refresh", name))
    assert f"Refreshed {name}" in out and "Couldn't refresh" not in out
    r = mserver.api("GET", page, headers=SIMPLE_JSON)
    assert sorted(f["filename"].split("-")[1] for f in r.json()["files"]) == ["1.0", "1.1"]


@pytest.mark.compat("devpi-client", "--version")
def test_version(devpi, iserver):
    from devpi.server import __version__

    devpi("use", iserver.url)
    out = output(devpi("--version"))
    assert "devpi-client 7." in out and f"devpi-server {__version__}" in out
