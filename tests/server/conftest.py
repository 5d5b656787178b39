"""Fixtures for the server tests: module-scoped real servers, on both storage engines.

Starting a server costs about half a second; tests that do not interfere
(they use their own user and index names) share one server per module.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from support.server import ServerProcess, server_factory


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for servers that live until the end of the test module."""
    # The module's tests share this server and one client address: their deliberate failed
    # logins would add up to a throttle no single test meant (throttling has its own tests,
    # tests/security/test_sec_auth_throttle.py).
    throttle_off = ("--login-rate", "1000/60", "--login-rate-user", "1000/60")
    with server_factory(tmp_path_factory.mktemp("srv"), throttle_off) as make:
        yield make


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
