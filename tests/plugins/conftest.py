"""Fixtures of the plugin tests (see plugin_helpers.py)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from plugin_helpers import HERE, VenvServer, make_env
from support.server import ServerProcess


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
