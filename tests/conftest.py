"""Shared fixtures: the real server process, a throwaway PostgreSQL, real dists.

`tests/` is put on sys.path so tests import helpers as `from support.x import ...`.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import pg
from support.seaweed import seaweed  # noqa: F401  (the session's S3 store, a fixture)
from support.server import ServerProcess
from support.slapd import slapd  # noqa: F401  (the session's LDAP directory, a fixture)

# Clients started by tests must not see this machine's pip configuration (extra
# indexes, find-links) nor reach anything but loopback.
os.environ["PIP_CONFIG_FILE"] = os.devnull
os.environ.pop("PIP_FIND_LINKS", None)
os.environ.pop("PIP_INDEX_URL", None)
os.environ.pop("PIP_EXTRA_INDEX_URL", None)
os.environ["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
os.environ["PIP_NO_CACHE_DIR"] = "1"
os.environ["UV_NO_CONFIG"] = "1"
os.environ["UV_NO_CACHE"] = "1"
os.environ["no_proxy"] = "127.0.0.1,localhost"

# A shell running a command in the background without job control (a CI script's
# `... &`) starts it with SIGINT ignored, and processes inherit that: servers the tests
# start would then ignore the Ctrl-C the tests send them. Tests behave as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption("--no-postgresql", action="store_true", help="skip the PostgreSQL variants")


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory, request):
    if request.config.getoption("--no-postgresql"):
        pytest.skip("--no-postgresql given")
    if not pg.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing on CI")
        pytest.skip("no PostgreSQL binaries on this machine")
    # Not under pytest's tmp dir: that is private to root, and the cluster may run as `postgres`.
    basedir = Path(tempfile.mkdtemp(prefix="devpi-pg-"))
    cluster = pg.PostgresCluster(basedir).start()
    yield cluster
    cluster.stop()
    shutil.rmtree(basedir, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request):
    """Run a test once on the embedded SQLite and once on a real PostgreSQL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_cluster").new_database()


@pytest.fixture(scope="module")
def upstream():
    """A real local upstream index (PEP 503/691 pages and files), one per test module."""
    from support.upstream import Upstream

    with Upstream() as up:
        yield up


@pytest.fixture
def make_server(tmp_path):
    started: list[ServerProcess] = []
    counter = iter(range(1000))

    def make(**kw) -> ServerProcess:
        serverdir = kw.pop("serverdir", None) or tmp_path / f"server{next(counter)}"
        s = ServerProcess(serverdir, **kw).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def server(make_server) -> ServerProcess:
    """A fresh server on SQLite, root password 'root', upstream pointing nowhere."""
    return make_server()


@pytest.fixture
def any_server(make_server, storage_url) -> ServerProcess:
    """A fresh server, once per storage engine (SQLite, PostgreSQL)."""
    return make_server(storage=storage_url)


@pytest.fixture
def store(tmp_path, storage_url):
    """A migrated Storage of its own (no server), once per storage engine."""
    from devpi.server.store.migrate import ensure_schema
    from devpi.server.store.storage import Storage

    s = Storage(storage_url or f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_schema(s)
    s.init_serial()
    yield s
    s.close()
