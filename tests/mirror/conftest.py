"""Fixtures for the mirror tests: one local upstream and one server per test module.

Tests in a module share them and stay out of each other's way by using their
own project names, their own mirror indexes (``make_mirror``) and targeted
upstream failure switches, which they clear again.
"""
from __future__ import annotations

import pytest
from support.hostile import HostileUpstream
from support.server import ServerProcess


@pytest.fixture(scope="module")
def mserver(tmp_path_factory, upstream):
    """A server whose root/pypi mirrors the module's upstream."""
    s = ServerProcess(tmp_path_factory.mktemp("mirror") / "server", mirror_url=upstream.url).start()
    yield s
    s.stop()
    # the mirror's cache writes are committed in the background: a failing one only logs
    assert "mirror: could not store" not in s.log_text()


@pytest.fixture(scope="module")
def root(mserver):
    return mserver.login("root", "root")


@pytest.fixture
def hostile():
    """A small upstream answering fixed routes (support/hostile.py): yields (base URL,
    routes, paths asked)."""
    with HostileUpstream() as up:
        yield up.url, up.routes, up.asked
