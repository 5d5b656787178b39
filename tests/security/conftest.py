"""Attack tests: the threat model in one place (see doc/security.md).

Every test here drives the real server process over HTTP as an attacker on the
same network would: no account or a low-privileged one, hostile bodies,
hostile upstreams, many or slow connections. Each test file owns one finding
family (named ``test_sec_<topic>.py``, unique across tests/), keeps its own
fixtures, and states in its docstring what the attacker tries and what must
hold instead.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from support.server import ServerProcess, server_factory


@pytest.fixture(scope="module")
def sec_servers(tmp_path_factory) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for real servers that live until the end of the test module."""
    with server_factory(tmp_path_factory.mktemp("sec")) as make:
        yield make


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine_srv(request, sec_servers) -> ServerProcess:
    """One server per module and storage engine (SQLite, then a real PostgreSQL)."""
    storage = request.getfixturevalue("pg_cluster").new_database() if request.param == "postgresql" else None
    return sec_servers(storage=storage)


@pytest.fixture(scope="module")
def srv(sec_servers) -> ServerProcess:
    """One SQLite server per test module (modules may define their own ``srv``)."""
    return sec_servers()
