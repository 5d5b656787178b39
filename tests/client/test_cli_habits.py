"""Habits of users coming from pip and from devpi-client 7.3 (issue 30), each through the
real ``devpi`` command against the real server."""
from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("suffix", ["/+simple/", "/+simple", "/+simple/some-project/"])
def test_use_accepts_the_pip_url_of_an_index(devpi, devpi_server, suffix):
    out = devpi.ok("use", devpi_server.url + "/root/pypi" + suffix)
    assert "pip URL: using the index" in out
    assert f"current devpi index: {devpi_server.url}/root/pypi " in out
    assert json.loads((devpi.clientdir / "current.json").read_text())["index"] == f"{devpi_server.url}/root/pypi"


def test_use_of_a_simple_url_of_an_unknown_index_names_the_index(devpi, devpi_server):
    line = devpi.fail("use", devpi_server.url + "/nobody/nothing/+simple/")
    assert "nobody/nothing" in line and "+simple" not in line and "not found" in line


def test_use_https_against_a_plain_http_server_fails_at_once_and_says_why(devpi, devpi_server):
    https = devpi_server.url.replace("http://", "https://")
    line = devpi.fail("use", https + "/root/pypi")  # the handshake's error, not a timeout
    assert "does not speak TLS" in line and devpi_server.url in line
