"""Plugins named on the server's start (DEVPI_SERVER_PLUGINS): only who starts the server sets
it, but a bad value must be refused in one line before anything happens, never half-load,
never run what is not a module name, and never show a traceback.

Plugins are code in the server's process with its rights (doc/plugins.md): what holds instead
is that a plugin cannot replace the server's own routes by registering the same rule."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PLUGINS = HERE.parent / "plugins"


def _start(tmp_path: Path, value: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DEVPI_SERVER_PLUGINS": value, "PYTHONPATH": str(PLUGINS)}
    return subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(tmp_path / "srv"),
                           "--port", "0"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


@pytest.mark.parametrize("value, says", [
    ("../../etc/passwd", "is not a module name"),
    ("os;touch pwned", "is not a module name"),
    ("sample_plugin,__import__('os').system('touch pwned')", "is not a module name"),
    ("/tmp/evil.py", "is not a module name"),
    ("x" * 5000 + "-", "is not a module name"),
    ("no_such_module_anywhere", "cannot load no_such_module_anywhere: ModuleNotFoundError"),
    ("test_sec_plugins_missing.sub", "cannot load test_sec_plugins_missing.sub: ModuleNotFoundError"),
])
def test_bad_plugin_names_refuse_the_start_in_one_line(tmp_path, value, says):
    done = _start(tmp_path, value)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devpi server: DEVPI_SERVER_PLUGINS: ") and says in lines[0]
    assert len(lines[0]) < 400
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "srv").exists()  # refused before the server dir is touched


def test_a_module_that_raises_on_import_refuses_the_start(tmp_path):
    (tmp_path / "explodes.py").write_text("raise RuntimeError('boom at import')\n")
    env_path = f"{tmp_path}"
    done = subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(tmp_path / "srv"),
                           "--port", "0"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "DEVPI_SERVER_PLUGINS": "explodes", "PYTHONPATH": env_path})
    assert done.returncode == 1
    assert done.stderr.strip() == "devpi server: DEVPI_SERVER_PLUGINS: cannot load explodes: RuntimeError: boom at import"
