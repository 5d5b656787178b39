"""Fixtures for plugin tests: a server environment of its own, and servers started from it.

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
from collections.abc import Iterator
from pathlib import Path

import pytest
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


@pytest.fixture(scope="session")
def server_env(tmp_path_factory) -> Path:
    return make_env(tmp_path_factory.mktemp("server-env") / "venv")


@pytest.fixture
def env_servers(tmp_path) -> Iterator:
    started: list[ServerProcess] = []

    def make(python: Path, **kw) -> ServerProcess:
        s = VenvServer(tmp_path / f"server{len(started)}", python=python, **kw).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def plugin_server(make_server):
    """A server (the test interpreter's) with test plugins registered by module name."""

    def make(*modules: str, **kw) -> ServerProcess:
        env = {"DEVPI_SERVER_PLUGINS": ",".join(modules), "PYTHONPATH": str(HERE), **kw.pop("env", {})}
        return make_server(env=env, **kw)

    return make
