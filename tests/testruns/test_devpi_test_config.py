"""Where `devpi test` takes the tox config from when the sdist has none (setuptools leaves tox.ini out).

In order: the sdist's own config, ``--fallback-ini`` (inside the sdist, or a file here),
the config of the checkout `devpi test` runs in when it is the tested project; else one
error line, and no run is opened on the server (a missing config is not a test result).
"""
from __future__ import annotations

import sys
from pathlib import Path

from runsupport import TOX_INI

PASSING = "def test_ok():\n    pass\n"


def write_checkout(path: Path, name: str, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    (path / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1.0"\n')
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    return path


def test_sdist_without_tox_config_is_tested_with_the_checkouts(env, tmp_path):
    env.upload_project("ck-pkg", {"tests/test_a.py": PASSING})  # no tox.ini, as setuptools builds it
    checkout = write_checkout(tmp_path / "Ck_Pkg", "Ck.Pkg", {"tox.ini": TOX_INI, "tests/test_a.py": PASSING})
    proc = env.devpi("test", "ck-pkg", cwd=checkout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"has no tox config: using tox.ini of the checkout here ({checkout})" in proc.stdout
    [run] = env.runs("ck-pkg")
    assert run["status"] == "passed" and run["envs"]["py"]["status"] == "passed"
    assert run["counts"] == {"passed": 1}
    assert not (checkout / ".tox").exists()  # tox worked elsewhere: the user's envs are not recreated


def test_fallback_ini_inside_the_sdist_and_outside(env, tmp_path):
    env.upload_project("fbpkg", {"tox-ci.ini": TOX_INI, "tests/test_a.py": PASSING})
    proc = env.devpi("test", "--fallback-ini", "tox-ci.ini", "fbpkg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tox-ci.ini" in proc.stdout  # the tox command names it

    outside = tmp_path / "shared" / "tox.ini"
    outside.parent.mkdir()
    outside.write_text("[testenv]\ndeps = pytest\ncommands = pytest --version\n")
    proc = env.devpi("test", "--fallback-ini", str(outside), "fbpkg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(outside) in proc.stdout
    assert not (outside.parent / ".tox").exists()  # tox worked in a temporary dir
    runs = env.runs("fbpkg")
    assert [r["status"] for r in runs] == ["passed", "passed"]

    # --list says what would be tested with which config, and runs nothing
    proc = env.devpi("test", "--list", "--fallback-ini", str(outside), "fbpkg", cwd=tmp_path, check=True)
    assert "would test: " in proc.stdout and "fbpkg-1.0.tar.gz" in proc.stdout
    assert f"tox config: {outside}" in proc.stdout
    assert len(env.runs("fbpkg")) == 2


def test_no_tox_config_anywhere_is_one_line_and_no_run(env, tmp_path):
    env.upload_project("nocfg", {"tests/test_a.py": PASSING})
    other = write_checkout(tmp_path / "other", "otherproject", {"tox.ini": TOX_INI})
    for cwd in (tmp_path, other):  # not a checkout; a checkout of another project
        proc = env.devpi("test", "nocfg", cwd=cwd)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        [line] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert line.startswith("devpi: error: no tox config in nocfg-1.0.tar.gz"), line
        assert "--fallback-ini PATH" in line and "in the project's checkout" in line
        assert "-c to name one" not in line
    proc = env.devpi("test", "--fallback-ini", "missing.ini", "nocfg", cwd=tmp_path)
    assert proc.returncode == 1
    assert "--fallback-ini missing.ini: no such file in nocfg-1.0.tar.gz" in proc.stderr
    assert env.runs("nocfg") == []
    listing = env.devpi("list", "nocfg", check=True).stdout
    assert "error" not in listing and "tests" not in listing


def test_fallback_ini_outside_the_sdist_on_a_gateway(env, tmp_path):
    """A gateway has no such file: its text goes along, and the unpacked sdist is tox's root there."""
    env.upload_project("gwfb", {"tests/test_a.py": PASSING})
    outside = tmp_path / "ci.ini"
    outside.write_text(TOX_INI)  # `pytest tests`: found only if the sdist is the root
    proc = env.devpi("test", "--tx", f"popen//python={sys.executable}", "--fallback-ini", str(outside), "gwfb",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = env.runs("gwfb")
    assert run["status"] == "passed" and run["counts"] == {"passed": 1}
