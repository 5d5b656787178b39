"""Fixtures for `devpi test` end to end: a server, an index that holds the test
dependencies, interpreters of this machine, and the real `devpi` command.

tox must install everything offline from our server: the build backend
(setuptools) and pytest with its dependencies are fetched once per session
from this machine's local package sources (its pip configuration's file://
indexes and find-links, never a network index) and uploaded to the test index.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from runsupport import DEPENDENCIES, NO_NETWORK, Env, local_sources, python_candidates
from support.server import ServerProcess


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("wheelhouse")
    env = {**os.environ, **NO_NETWORK, "PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d",
                           str(dest), *local_sources(), *DEPENDENCIES], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return dest


@pytest.fixture(scope="session")
def pythons(tmp_path_factory) -> dict[str, str]:
    """Working interpreters by "3.X" (pyenv shims that fail are skipped), each checked by running it."""
    out: dict[str, str] = {}
    for path in python_candidates():
        try:
            proc = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = proc.stdout.strip()
        if proc.returncode == 0 and version and version not in out:
            out[version] = os.path.realpath(path)
    return out


@pytest.fixture(scope="session")
def bindir(tmp_path_factory, pythons) -> Path:
    """A PATH entry with python3.X for every working interpreter and a tox of the test interpreter."""
    d = tmp_path_factory.mktemp("bin")
    for version, path in pythons.items():
        (d / f"python{version}").symlink_to(path)
    tox = d / "tox"
    tox.write_text(f"#!/bin/sh\nexec {sys.executable} -m tox \"$@\"\n")
    tox.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def env(tmp_path_factory, wheelhouse, bindir) -> Env:
    tmp = tmp_path_factory.mktemp("testruns")
    server = ServerProcess(tmp / "server").start()
    try:
        auth = server.create_user("alice", "secret")
        server.create_index(auth, "dev")
        for wheel in sorted(wheelhouse.glob("*.whl")):
            r = server.upload("alice/dev", wheel, auth)
            assert r.status_code == 200, r.text
        e = Env(server, auth, "alice/dev", tmp / "client", bindir, tmp)
        e.devpi("use", f"{server.url}/alice/dev", check=True)
        e.devpi("login", "alice", "--password", "secret", check=True)
        yield e
    finally:
        server.stop()
