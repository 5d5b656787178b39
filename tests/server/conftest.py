"""Fixtures for the server tests: module-scoped real servers, on both storage engines.

Starting a server costs about half a second; tests that do not interfere
(they use their own user and index names) share one server per module.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.server import ServerProcess


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for servers that live until the end of the test module."""
    started: list[ServerProcess] = []
    base = tmp_path_factory.mktemp("srv")

    def make(**kw) -> ServerProcess:
        serverdir = kw.pop("serverdir", None) or base / f"server{len(started)}"
        # The module's tests share this server and one client address: their deliberate failed
        # logins would add up to a throttle no single test meant (throttling has its own tests,
        # tests/security/test_sec_auth_throttle.py).
        kw["args"] = ("--login-rate", "1000/60", "--login-rate-user", "1000/60", *kw.get("args", ()))
        s = ServerProcess(Path(serverdir), **kw).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine_server(request, module_servers) -> ServerProcess:
    """One server per module and storage engine (SQLite, then a real PostgreSQL)."""
    storage = None
    if request.param == "postgresql":
        storage = request.getfixturevalue("pg_cluster").new_database()
    return module_servers(storage=storage)


@pytest.fixture(scope="module")
def sqlite_server(module_servers) -> ServerProcess:
    return module_servers()
