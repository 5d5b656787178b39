"""End-to-end workflows with the real ``devpi`` command, real builds, real pip.

* upload from a checkout (``python -m build``, isolated) then ``devpi install``
  into a fresh virtualenv;
* the staged workflow: upload to alice/dev, push to alice/prod, pip installs
  from alice/prod; a second server acts as the external repository of a
  ``pypi:`` push and the files arrive there byte-identical.

Offline: the isolated build env gets setuptools from the wheels virtualenv
ships (virtualenv comes with tox), nothing is fetched from the internet.
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from clienthelpers import make_sdist, write_project, write_pypirc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def build_env() -> dict[str, str]:
    """Environment for an offline isolated build: setuptools from a local wheel dir only."""
    try:
        import virtualenv
    except ImportError:
        pytest.skip("virtualenv (for its bundled setuptools wheel) is not installed")
    embed = Path(virtualenv.__file__).parent / "seed" / "wheels" / "embed"
    if not list(embed.glob("setuptools-*.whl")):
        pytest.skip("no bundled setuptools wheel found")
    return {"PIP_FIND_LINKS": str(embed), "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True)
    return path / ("Scripts" if sys.platform == "win32" else "bin") / "python"


def import_version(python: Path, module: str) -> str:
    return subprocess.run([str(python), "-c", f"import {module}; print({module}.VERSION)"],
                          check=True, capture_output=True, text=True).stdout.strip()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def release_files(base_url: str, index: str, project: str, version: str) -> dict[str, bytes]:
    """basename -> bytes of every release file of a version, fetched as a downloader would."""
    r = requests.get(f"{base_url}/{index}/{project}/{version}", headers={"Accept": "application/json"},
                     timeout=30)
    assert r.status_code == 200, r.text
    files = {}
    for link in r.json()["result"]["+links"]:
        if link["rel"] == "releasefile":
            data = requests.get(link["href"], timeout=30).content
            assert sha256(data) == link["hashes"]["sha256"]
            files[link["href"].rsplit("/", 1)[1]] = data
    return files


def test_upload_from_checkout_then_install_into_fresh_venv(alice, devpi_server, tmp_path, build_env):
    proj = write_project(tmp_path / "src", "tinypkg", "1.0")
    out = alice.ok("upload", cwd=proj, env=build_env)
    assert "(isolated)" in out
    assert "built tinypkg-1.0.tar.gz" in out and "built tinypkg-1.0-py3-none-any.whl" in out
    assert "uploaded tinypkg-1.0.tar.gz" in out and "uploaded tinypkg-1.0-py3-none-any.whl" in out
    urls = [line for line in out.splitlines() if line.startswith("http")]
    assert len(urls) == 2 and all(u.startswith(f"{devpi_server.url}/alice/dev/") for u in urls)
    # the checkout is left alone: built into a temp dir
    assert not (proj / "dist").exists()
    out = alice.ok("list", "tinypkg")
    assert "tinypkg 1.0" in out and "tinypkg-1.0.tar.gz" in out and "tinypkg-1.0-py3-none-any.whl" in out

    python = make_venv(tmp_path / "venv")
    out = alice.ok("install", "--venv", str(tmp_path / "venv"), "tinypkg")
    assert "PIP_INDEX_URL=http://alice:****@" in out  # logged in: the token goes along, masked here
    assert import_version(python, "tinypkg") == "1.0"
    assert "tinypkg" in alice.ok("install", "--venv", str(tmp_path / "venv"), "-l")
    r = alice.run("install", "--venv", str(tmp_path / "venv"), "does-not-exist-anywhere")
    assert r.rc != 0 and "Traceback" not in r.err
    assert r.err_lines[-1] == "devpi: error: pip install failed with exit code 1"
    assert "not a virtualenv" in alice.fail("install", "--venv", str(tmp_path), "tinypkg")


def test_staged_workflow_with_external_push(alice, devpi_server, new_server, tmp_path, build_env):
    proj = write_project(tmp_path / "src", "stagedpkg", "1.0")
    html = proj / "docs" / "_build" / "html"
    html.mkdir(parents=True)
    (html / "index.html").write_text("<html><body>stagedpkg docs</body></html>")
    alice.ok("index", "-c", "prod", "volatile=False")

    # 1. upload release files and docs to alice/dev
    out = alice.ok("upload", "--with-docs", str(html), cwd=proj, env=build_env)
    assert "uploaded docs stagedpkg-1.0.doc.zip" in out
    out = alice.ok("list", "stagedpkg")
    assert "[docs]" in out
    dev_files = release_files(devpi_server.url, "alice/dev", "stagedpkg", "1.0")
    assert sorted(dev_files) == ["stagedpkg-1.0-py3-none-any.whl", "stagedpkg-1.0.tar.gz"]

    # 2. push to alice/prod (non-volatile): once fine, twice a no-op (the same files are
    # there already, as for an identical upload; other bytes would be a 409)
    out = alice.ok("push", "stagedpkg==1.0", "alice/prod")
    assert "pushed stagedpkg==1.0 from alice/dev to alice/prod" in out
    out = alice.ok("push", "stagedpkg==1.0", "alice/prod")
    assert "skip_identical" in out and "store_releasefile" not in out, out
    out = alice.ok("list", "stagedpkg", "--index", "alice/prod")
    assert "(alice/prod)" in out and "[docs]" in out
    prod_files = release_files(devpi_server.url, "alice/prod", "stagedpkg", "1.0")
    assert prod_files == dev_files

    # --no-docs leaves the docs behind
    alice.ok("index", "-c", "nodocs")
    alice.ok("push", "stagedpkg==1.0", "alice/nodocs", "--no-docs")
    assert "[docs]" not in alice.ok("list", "stagedpkg", "--index", "alice/nodocs")

    # 3. plain pip installs from alice/prod
    python = make_venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "--index-url", f"{devpi_server.url}/alice/prod/+simple/",
                    "stagedpkg"], check=True, capture_output=True, env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    assert import_version(python, "stagedpkg") == "1.0"

    # 4. push from alice/prod to an external repository (a second server) named in a .pypirc
    ext = new_server()
    bob = ext.create_user("bob", "bobpw")
    ext.create_index(bob, "ext")
    pypirc = write_pypirc(tmp_path, {"ext": {"repository": f"{ext.url}/bob/ext/", "username": "bob",
                                             "password": "bobpw"}})
    pypirc.chmod(stat.S_IRUSR | stat.S_IWUSR)
    out = alice.ok("push", "stagedpkg==1.0", "pypi:ext", "--pypirc", str(pypirc), "--index", "alice/prod")
    assert f"pushed stagedpkg==1.0 from alice/prod to ext ({ext.url}/bob/ext/)" in out
    ext_files = release_files(ext.url, "bob/ext", "stagedpkg", "1.0")
    assert {k: sha256(v) for k, v in ext_files.items()} == {k: sha256(v) for k, v in prod_files.items()}

    # wrong credentials for the external repository: one error line
    bad = write_pypirc(tmp_path, {"ext": {"repository": f"{ext.url}/bob/ext/", "username": "bob",
                                          "password": "wrong"}})
    line = alice.fail("push", "stagedpkg==1.0", "pypi:ext", "--pypirc", str(bad), "--index", "alice/prod")
    assert "push of stagedpkg==1.0 to ext" in line


def test_docs_only_and_sphinx(alice, devpi_server, tmp_path):
    """--only-docs with existing release files; a Sphinx source dir is built with sphinx-build."""
    dist = tmp_path / "docpkg-2.0.tar.gz"
    make_sdist(dist, "docpkg", "2.0")
    alice.ok("upload", str(dist))
    src = tmp_path / "docsrc"
    src.mkdir()
    (src / "conf.py").write_text("project = 'docpkg'\n")
    # no sphinx-build on PATH: a clear error
    env_nosphinx = {"PATH": str(Path(sys.executable).parent)}
    line = alice.fail("upload", "--only-docs", str(src), str(dist), env=env_nosphinx)
    assert "sphinx-build is not installed" in line
    # a stand-in sphinx-build (as in the wire notes) that writes the HTML tree
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "sphinx-build"
    fake.write_text(f"#!{sys.executable}\nimport sys, pathlib\n"
                    "out = pathlib.Path(sys.argv[-1]); out.mkdir(parents=True, exist_ok=True)\n"
                    "(out / 'index.html').write_text('built by sphinx')\n")
    fake.chmod(0o755)
    out = alice.ok("upload", "--only-docs", str(src), str(dist),
                   env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert "uploaded docs docpkg-2.0.doc.zip" in out and "uploaded docpkg-2.0.tar.gz" not in out
    out = alice.ok("list", "docpkg")
    assert "[docs]" in out


def test_upload_build_failure_is_reported(alice, tmp_path, build_env):
    proj = tmp_path / "broken"
    proj.mkdir()
    (proj / "pyproject.toml").write_text("[build-system]\nrequires = ['setuptools>=61']\n"
                                         "build-backend = 'setuptools.build_meta'\n[project]\nname = 'broken'\n")
    r = alice.run("upload", cwd=proj, env=build_env)
    assert r.rc == 1 and "Traceback" not in r.err.splitlines()[-1]
    assert r.err_lines[-1].startswith("devpi: error: build failed with exit code")


def test_push_pins_an_upstream_release_in_a_private_index(devpi, new_server, tmp_path):
    """``devpi push --index root/pypi`` copies a release the mirror serves into alice/prod
    (downloading and checking its files); pip then installs it from alice/prod alone."""
    from support.upstream import Upstream

    with Upstream() as upstream:
        wheel = upstream.add_wheel("pinned-lib", "1.2", summary="a library to pin")
        server = new_server(mirror_url=upstream.url)
        devpi.ok("use", server.url)
        devpi.ok("user", "-c", "alice", "password=alicepw")
        devpi.ok("login", "alice", "--password", "alicepw")
        devpi.ok("index", "-c", "prod", "bases=")
        out = devpi.ok("push", "--index", "root/pypi", "pinned-lib==1.2", "alice/prod")
        assert wheel.filename in out
        err = devpi.fail("push", "--index", "root/pypi", "pinned-lib==9.9", "alice/prod")
        assert "no release/files found" in err
    # the upstream is gone: alice/prod has its own copy
    target = tmp_path / "target"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                        "--target", str(target), "-i", f"{server.url}/alice/prod/+simple/", "pinned-lib==1.2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "pinned_lib-1.2.dist-info").is_dir()
    assert devpi.ok("getjson", "/alice/prod/pinned-lib/1.2").count("a library to pin") == 1
