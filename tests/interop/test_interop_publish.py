"""Publishing with twine and uv to a stage index (the legacy upload API, Basic auth)."""
from __future__ import annotations

import pytest
import requests
from interop.helpers import output, run, sha256, unique
from support.dists import write_sdist, write_wheel

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
README = "# A project\n\nwith a *Markdown* description.\n"


@pytest.fixture
def erin(iserver):
    name = unique("erin")
    auth = iserver.create_user(name, "erinpw")
    iserver.create_index(auth, "dev")
    iserver.create_index(auth, "prod", volatile=False)
    return name, "erinpw"


def served(server, index: str, project: str) -> dict[str, str]:
    r = server.api("GET", f"/{index}/+simple/{project}/", headers=SIMPLE_JSON)
    assert r.status_code == 200, r.text
    return {f["filename"]: f["hashes"]["sha256"] for f in r.json()["files"]}


def dists(directory, name: str, version: str, **meta):
    directory.mkdir(parents=True, exist_ok=True)
    return [write_wheel(directory, name, version, **meta), write_sdist(directory, name, version, **meta)]


@pytest.fixture
def twine(tools, sandbox):
    env = tools("twine")

    def call(*args, check=True):
        return run([env.exe("twine"), *args], env=sandbox, check=check)
    return call


@pytest.mark.compat("twine", "upload")
def test_twine_upload(twine, iserver, erin, tmp_path):
    user, pw = erin
    files = dists(tmp_path / "a", "tw-pkg", "1.0", summary="twine", requires_python=">=3.8")
    twine("upload", "--non-interactive", "--repository-url", f"{iserver.url}/{user}/dev/", "-u", user, "-p", pw,
          *files)
    assert served(iserver, f"{user}/dev", "tw-pkg") == {f.name: sha256(f) for f in files}
    meta = iserver.api("GET", f"/{user}/dev/tw-pkg/1.0").json()["result"]
    assert meta["summary"] == "twine" and meta["requires_python"] == ">=3.8"

    # the login token works as the password too (what `devpi test`/CI setups hand to twine)
    token = iserver.login(user, pw)[1]
    more = dists(tmp_path / "b", "tw-pkg", "1.1")
    twine("upload", "--non-interactive", "--repository-url", f"{iserver.url}/{user}/prod/", "-u", user,
          "-p", token, *more)
    assert set(served(iserver, f"{user}/prod", "tw-pkg")) == {f.name for f in more}

    # non-volatile index: identical re-upload passes, different bytes are a conflict twine reports
    # (twine 6+ allows --skip-existing only for repositories it knows, so that is not tried here)
    prod = ["--non-interactive", "--repository-url", f"{iserver.url}/{user}/prod/", "-u", user, "-p", pw]
    twine("upload", *prod, *more)
    changed = write_wheel(tmp_path, "tw-pkg", "1.1", summary="changed")
    proc = twine("upload", *prod, changed, check=False)
    assert proc.returncode != 0 and "409" in output(proc)

    # wrong password and anonymous uploads are refused
    proc = twine("upload", "--non-interactive", "--repository-url", f"{iserver.url}/{user}/dev/", "-u", user,
                 "-p", "wrong", *dists(tmp_path / "c", "tw-pkg", "2.0"), check=False)
    assert proc.returncode != 0 and ("401" in output(proc) or "403" in output(proc))


@pytest.mark.compat("twine", "check")
def test_twine_check_of_served_files(twine, iserver, erin, tmp_path):
    user, pw = erin
    files = dists(tmp_path / "up", "checked-pkg", "1.0", summary="checked", description=README,
                  description_content_type="text/markdown")
    for f in files:
        assert iserver.upload(f"{user}/dev", f, erin).status_code == 200
    r = iserver.api("GET", f"/{user}/dev/+simple/checked-pkg/", headers=SIMPLE_JSON)
    down = tmp_path / "down"
    down.mkdir()
    for entry in r.json()["files"]:
        url = requests.compat.urljoin(r.url, entry["url"])
        (down / entry["filename"]).write_bytes(requests.get(url, timeout=30).content)
    fetched = sorted(down.iterdir())
    assert {p.name: sha256(p) for p in fetched} == {f.name: sha256(f) for f in files}
    out = output(twine("check", "--strict", *fetched))
    assert out.count("PASSED") == 2, out


@pytest.mark.compat("uv", "publish")
def test_uv_publish(tools, sandbox, iserver, erin, tmp_path):
    user, pw = erin
    uv = tools("uv").exe("uv")
    files = dists(tmp_path / "a", "uvp-pkg", "1.0", summary="uv")
    publish = [uv, "publish", "--publish-url", f"{iserver.url}/{user}/prod/", "--username", user,
               "--password", pw, "--trusted-publishing", "never"]
    run([*publish, *files], env=sandbox)
    assert served(iserver, f"{user}/prod", "uvp-pkg") == {f.name: sha256(f) for f in files}
    # re-publishing with --check-url skips what the index already has
    out = output(run([*publish, "--check-url", f"{iserver.url}/{user}/prod/+simple/", *files], env=sandbox))
    assert "skipping" in out.lower() or "already exists" in out.lower(), out
    # a different file under an existing name is refused by the non-volatile index
    changed = write_wheel(tmp_path, "uvp-pkg", "1.0", summary="changed")
    proc = run([*publish, changed], env=sandbox, check=False)
    assert proc.returncode != 0 and "409" in output(proc)
