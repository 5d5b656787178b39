"""Fixtures for the CLI tests: the real server process and the real ``devpi`` command.

Every test runs ``devpi`` as a subprocess, the way a user types it, with its
own client dir (``DEVPI_CLIENTDIR``) in tmp_path.  The server comes from the
shared ``server`` / ``make_server`` fixtures of tests/conftest.py; when they
are not available (running this directory on its own), the same
tests/support/server.py process helper is used directly.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
for _p in (TESTS_DIR, Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from clienthelpers import DevpiCLI  # noqa: E402


def _fallback_server(tmp_path_factory: pytest.TempPathFactory, name: str):
    from support.server import ServerProcess

    return ServerProcess(tmp_path_factory.mktemp(name) / "serverdir").start()


@pytest.fixture
def devpi_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The real server (shared fixture ``server`` when present)."""
    try:
        return request.getfixturevalue("server")
    except pytest.FixtureLookupError:
        srv = _fallback_server(tmp_path_factory, "server")
        request.addfinalizer(srv.stop)
        return srv


@pytest.fixture
def new_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Factory for additional server processes that the test owns (it may stop them)."""
    try:
        factory = request.getfixturevalue("make_server")
    except pytest.FixtureLookupError:
        factory = None
    if factory is not None:
        yield factory
    else:
        started = []

        def make(**opts):
            srv = _fallback_server(tmp_path_factory, "server2")
            started.append(srv)
            return srv

        yield make
        for srv in started:
            srv.stop()


@pytest.fixture
def devpi(tmp_path: Path) -> DevpiCLI:
    """A ``devpi`` runner with its own client dir."""
    work = tmp_path / "work"
    work.mkdir()
    return DevpiCLI(tmp_path / "clientdir", work)


@pytest.fixture
def make_cli(tmp_path: Path):
    """More runners (other users on the same machine)."""
    def make(name: str, **env: str) -> DevpiCLI:
        work = tmp_path / f"work-{name}"
        work.mkdir(exist_ok=True)
        return DevpiCLI(tmp_path / f"clientdir-{name}", work, env=env)
    return make


@pytest.fixture
def alice(devpi: DevpiCLI, devpi_server) -> DevpiCLI:
    """Client logged in as alice with alice/dev (volatile, base root/pypi) in use."""
    devpi.ok("use", devpi_server.url)
    devpi.ok("user", "-c", "alice", "password=alicepw", "email=alice@example.com")
    devpi.ok("login", "alice", "--password", "alicepw")
    devpi.ok("index", "-c", "dev", "bases=root/pypi")
    devpi.ok("use", "alice/dev")
    return devpi
