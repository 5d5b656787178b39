"""Helpers of the plugin tests: a server environment of its own, and servers started from it.

``server_env`` is a virtualenv whose interpreter sees everything the test interpreter
sees (devpi installed, its dependencies) through a ``.pth`` line, plus what the test
installs into it with pip: a plugin installed there is found by its entry point exactly
as in a real install, and uninstalling it removes it, without reinstalling the server
each time.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from support.server import ServerProcess

HERE = Path(__file__).parent


class VenvServer(ServerProcess):
    """A real server process started with another environment's interpreter."""

    def __init__(self, *args, python: Path, **kw):
        super().__init__(*args, **kw)
        self.python = python

    def command(self) -> list[str]:
        return [str(self.python), *super().command()[1:]]


def make_env(path: Path) -> Path:
    """A venv without pip (the test interpreter's pip installs into it) seeing our packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "_devpi_test_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check",
                           *args], capture_output=True, text=True, env=env, timeout=600)
