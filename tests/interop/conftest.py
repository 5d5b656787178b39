"""Fixtures and the compatibility-matrix plugin of the interop suite.

Every test here is marked ``interop``. Servers are module-scoped (one per test
module and xdist worker); tests stay independent of each other by using their
own users and indexes (``helpers.unique``), so any test can run alone or on any
worker.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from interop import compat
from interop.helpers import DevpiClient
from interop.toolenv import FileLock, ToolEnv, cache_root, tool_env
from support.server import ServerProcess

HERE = Path(__file__).parent
_RECORDER = compat.Recorder()
_STATE: dict[str, str] = {}


# -- the matrix plugin ------------------------------------------------------------------
# Runs in whichever processes load this conftest: a plain run, each xdist worker, and the
# xdist controller only when tests/interop was named on the command line. Workers pool
# their outcomes in a directory per test run; whoever holds a complete set writes the doc.
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat(tool, operation): the compatibility-matrix row(s) a test checks")
    config.addinivalue_line("markers", "no_compat: an interop test that drives no tool (the matrix plugin itself)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in Path(item.path).parents:
            continue
        item.add_marker(pytest.mark.interop)
        keys = compat.keys_of(item)
        if not keys and item.get_closest_marker("no_compat") is None:
            raise pytest.UsageError(f"{item.nodeid}: every interop test needs a compat(tool, operation) mark")
        item.user_properties.extend(("compat", json.dumps(list(k))) for k in keys)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _RECORDER.record(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    recorder = _RECORDER
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        rundir = Path(tempfile.gettempdir()) / f"devpi-interop-compat-{workerinput['testrunuid']}"
        with FileLock(rundir.with_suffix(".lock")):
            recorder = recorder.merge_into(rundir, workerinput["workerid"])
            _maybe_write(recorder)
    else:
        _maybe_write(recorder)


def _maybe_write(recorder: compat.Recorder) -> None:
    from devpi.server import __version__

    if not recorder.events:
        return
    if not recorder.complete:
        ran = sum(c.status != compat.NOT_RUN for c in recorder.cells().values())
        _STATE["summary"] = (f"interop: partial run ({ran} of {len(compat.OPERATIONS)} operations); "
                             f"{compat.DOC.relative_to(HERE.parents[1])} left unchanged")
        return
    text = compat.render(recorder.cells(), __version__)
    if not compat.DOC.exists() or compat.DOC.read_text() != text:
        compat.DOC.parent.mkdir(parents=True, exist_ok=True)
        compat.DOC.write_text(text)
    _STATE["summary"] = f"interop: compatibility matrix written to {compat.DOC}"


def pytest_terminal_summary(terminalreporter) -> None:
    if "summary" in _STATE:
        terminalreporter.write_line(_STATE["summary"])


# -- tools ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tools():
    """tools("pip") -> the ToolEnv of that tool (created and cached on first use)."""
    def get(name: str) -> ToolEnv:
        return tool_env(name)
    return get


@pytest.fixture
def sandbox(tmp_path) -> dict[str, str]:
    """Environment for a tool run: private HOME, and no way out but to 127.0.0.1."""
    home = tmp_path / "home"
    home.mkdir()
    dead = "http://127.0.0.1:9"
    return {"HOME": str(home), "http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead,
            "HTTPS_PROXY": dead, "ALL_PROXY": dead, "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost", "XDG_CONFIG_HOME": str(home / ".config"),
            # tox's virtualenv: seed wheels unpacked once per cache, not per test; no setuptools
            # copied into every env (the test projects build with a stdlib-only backend)
            "VIRTUALENV_OVERRIDE_APP_DATA": str(cache_root() / "virtualenv-app-data"),
            "VIRTUALENV_NO_SETUPTOOLS": "1", "VIRTUALENV_NO_WHEEL": "1"}


@pytest.fixture
def devpi(tools, tmp_path, sandbox) -> DevpiClient:
    """The original devpi-client's `devpi` command, with a private client dir and HOME."""
    return DevpiClient(tools("devpi-client"), tmp_path / "clientdir", sandbox)


# -- servers ----------------------------------------------------------------------------------
def _start(tmp_path_factory, name: str, **kw) -> ServerProcess:
    return ServerProcess(tmp_path_factory.mktemp(name) / "server", **kw).start()


@pytest.fixture(scope="module")
def iserver(tmp_path_factory):
    """A server for the whole module, its root/pypi pointing nowhere (stage-only tests)."""
    s = _start(tmp_path_factory, "iserver")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def mserver(tmp_path_factory, upstream):
    """A server for the whole module whose root/pypi mirrors the local upstream."""
    s = _start(tmp_path_factory, "mserver", mirror_url=upstream.url)
    yield s
    s.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    if any("interop" in str(a) for a in config.args):
        return f"interop tool venvs: {cache_root()} (DEVPI_INTEROP_CACHE); pid {os.getpid()}"
    return None
