"""``pip install .`` is the client only, and that client does the whole job.

One venv per session (tests/support/clientvenv.py) gets the checkout installed
without extras, from this machine's local package sources only. The package
set is checked with ``pip list``, and its ``devpi`` uploads, tests and pushes
against this module's server, which runs from the repo's own environment: a
``[server]`` install. Its ``devpi server`` must say in one line what to
install.
"""
from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from runsupport import TOX_INI, local_sources
from support.clientvenv import client_only_venv, installed, venv_bin

# the server's libraries, and what they pull in (web UI, readme rendering)
SERVER_ONLY = ("sqlalchemy", "alembic", "uvicorn", "httptools", "waitress", "jinja2", "bottle", "multipart",
               "readme-renderer", "pygments", "markdown", "markupsafe", "mako")


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return client_only_venv(shared, local_sources())


def venv_devpi(venv: Path, env, *args: str, cwd: Path | None = None,
               extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv_bin(venv, "devpi")), "--clientdir", str(env.clientdir), *args],
                          env={**env.client_env(), **(extra_env or {})}, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def write_project(base: Path, name: str) -> Path:
    proj = base / name
    (proj / "src" / name).mkdir(parents=True)
    (proj / "tests").mkdir()
    (proj / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "1.0"
        """))
    (proj / "src" / name / "__init__.py").write_text("ANSWER = 42\n")
    (proj / "tox.ini").write_text(TOX_INI)
    (proj / "MANIFEST.in").write_text("include tox.ini\nrecursive-include tests *.py\n")  # into the sdist
    (proj / "tests" / "test_answer.py").write_text(f"from {name} import ANSWER\n\n"
                                                    "def test_answer():\n    assert ANSWER == 42\n")
    return proj


def test_client_only_install_has_no_server_libraries(client_venv):
    packages = installed(client_venv)
    assert {"devpi", "requests", "build", "tox", "pluggy"} <= set(packages), sorted(packages)
    assert [name for name in SERVER_ONLY if name in packages] == []


def test_devpi_server_without_the_extra_says_what_to_install(client_venv, tmp_path):
    for cmd in ([str(venv_bin(client_venv, "devpi")), "server", "--serverdir", str(tmp_path / "s")],
                [str(venv_bin(client_venv, "python")), "-m", "devpi.server", "--serverdir", str(tmp_path / "s")]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0, proc.stdout
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("devpi server needs the server extra"), lines[0]
        assert lines[0].endswith("pip install 'devpi[server]'"), lines[0]
        assert "SQLAlchemy" in lines[0]
        assert not (tmp_path / "s").exists()


def test_upload_test_push_from_client_only_install(client_venv, env, tmp_path):
    proj = write_project(tmp_path, "splitpkg")
    # the isolated build takes setuptools from the index, which holds it (see conftest.py)
    build_env = {"PIP_INDEX_URL": f"{env.server.url}/{env.index}/+simple/", "PIP_CONFIG_FILE": os.devnull}
    proc = venv_devpi(client_venv, env, "upload", cwd=proj, extra_env=build_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "uploaded splitpkg-1.0.tar.gz" in proc.stdout

    proc = venv_devpi(client_venv, env, "test", "splitpkg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = env.runs("splitpkg")
    assert run["status"] == "passed" and run["counts"] == {"passed": 1}
    assert run["python"] and run["envs"]["py"]["status"] == "passed"

    env.server.create_index(env.auth, "prod")
    proc = venv_devpi(client_venv, env, "push", "splitpkg==1.0", "alice/prod")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = env.server.api("GET", "/alice/prod/splitpkg")
    assert r.status_code == 200, r.text
    links = r.json()["result"]["1.0"]["+links"]
    assert sorted(lk["href"].rsplit("/", 1)[1] for lk in links if lk["rel"] == "releasefile") == [
        "splitpkg-1.0-py3-none-any.whl", "splitpkg-1.0.tar.gz"]
