"""tox 4 (pip backend, and uv through tox-uv) installing from our index via the environment.

The project's tox env needs ``only-here``, which exists on our index and
nowhere else, so a run can only pass if the installer really used the index
given in PIP_INDEX_URL / UV_INDEX_URL. The project builds with a stdlib-only
in-tree backend, so the isolated build needs nothing from any index.
"""
from __future__ import annotations

import pytest
from interop.helpers import output, run, unique, write_project
from support.dists import write_wheel

TOX_INI = """\
    [tox]
    envlist = py
    [testenv]
    deps = only-here==2.5
    commands = python -c "import only_here, toxed_pkg; print('dep', only_here.VERSION, 'pkg', toxed_pkg.__version__)"
    """


@pytest.fixture
def index_url(iserver, tmp_path):
    user = unique("tina")
    auth = iserver.create_user(user, "pw")
    iserver.create_index(auth, "dev")
    assert iserver.upload(f"{user}/dev", write_wheel(tmp_path, "only-here", "2.5"), (user, "pw")).status_code == 200
    return f"{iserver.url}/{user}/dev/+simple/"


def run_tox(env, sandbox, project, extra_env):
    environ = {**sandbox, **extra_env}
    return run([env.exe("tox"), "-e", "py", "--workdir", project.parent / "toxwork"], cwd=project, env=environ,
               timeout=600)


@pytest.mark.compat("tox", "PIP_INDEX_URL")
def test_tox_pip_index_url(tools, sandbox, index_url, tmp_path):
    project = write_project(tmp_path / "proj", "toxed-pkg", "0.3", tox_ini=TOX_INI, backend="intree")
    out = output(run_tox(tools("tox"), sandbox, project, {"PIP_INDEX_URL": index_url}))
    assert "dep 2.5 pkg 0.3" in out and "congratulations" in out


@pytest.mark.compat("tox-uv", "UV_INDEX_URL")
def test_tox_uv_index_url(tools, sandbox, index_url, tmp_path):
    project = write_project(tmp_path / "proj", "toxed-pkg", "0.4", tox_ini=TOX_INI, backend="intree")
    out = output(run_tox(tools("tox-uv"), sandbox, project, {"UV_INDEX_URL": index_url}))
    assert "dep 2.5 pkg 0.4" in out and "congratulations" in out
    assert "uv pip install" in out or "uv-venv" in out, out  # really the uv installer, not pip
