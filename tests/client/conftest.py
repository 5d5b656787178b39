"""Fixtures for the CLI tests: the real server process and the real ``devpi`` command.

Every test runs ``devpi`` as a subprocess, the way a user types it, with its
own client dir (``DEVPI_CLIENTDIR``) in tmp_path.  The server comes from the
shared ``server`` / ``make_server`` fixtures of tests/conftest.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from clienthelpers import DevpiCLI  # noqa: E402


@pytest.fixture
def devpi_server(server):
    """The real server process (tests/conftest.py's ``server``: fresh, root password 'root')."""
    return server


@pytest.fixture
def new_server(make_server):
    """Factory for further server processes the test owns (it may stop them)."""
    return make_server


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
