"""Helpers of the `devpi test` tests: local package sources, interpreters, the client as a user runs it."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.dists import write_sdist, write_wheel
from support.server import ServerProcess

DEPENDENCIES = ("setuptools", "pytest")
NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "no_proxy": "127.0.0.1,localhost"}


def local_sources() -> list[str]:
    """pip options naming this machine's local package sources, from its normal pip configuration."""
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONFIG_FILE"}
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], env=env, capture_output=True,
                         text=True).stdout
    indexes: list[str] = []
    links: list[str] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        values = value.strip().strip("'\"").split()
        if key.endswith(("index-url", "extra-index-url")):
            indexes += [v for v in values if v.startswith("file:")]
        elif key.endswith("find-links"):
            links += [v for v in values if not v.startswith(("http:", "https:"))]
    if not indexes and not links:
        pytest.fail("this machine's pip configuration names no local package source (file:// index or "
                    "find-links) to take setuptools and pytest from")
    opts = ["--index-url", indexes[0]] if indexes else ["--no-index"]
    for url in indexes[1:]:
        opts += ["--extra-index-url", url]
    for link in links:
        opts += ["--find-links", link]
    return opts


def python_candidates() -> list[str]:
    found = [shutil.which(f"python3.{minor}") for minor in range(8, 20)]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found += sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3.*")))
    found += [sys.executable]
    return [p for p in found if p and re.search(r"python3(\.\d+)?$", p)]


def two_pythons(pythons: dict[str, str]) -> list[str]:
    versions = [v for v in ("3.11", "3.12", "3.13") if v in pythons]
    assert len(versions) >= 2, f"need two of python3.11 .. python3.13 on this machine, found {sorted(pythons)}"
    return versions[:2]


@dataclass
class Env:
    server: ServerProcess
    auth: tuple[str, str]
    index: str
    clientdir: Path
    bindir: Path
    tmp: Path

    def devpi(self, *args: str, check: bool = False, timeout: float = 600,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "devpi.client", "--clientdir", str(self.clientdir), *args],
                              env=self.client_env(), capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def client_env(self) -> dict[str, str]:
        return {**os.environ, **NO_NETWORK, "PATH": f"{self.bindir}{os.pathsep}{os.environ['PATH']}",
                "PYTHONUNBUFFERED": "1", "PIP_NO_COMPILE": "1"}  # byte-compiling pytest's deps is slow

    def upload_project(self, name: str, files: dict[str, str], version: str = "1.0", index: str | None = None,
                       wheel: bool = False) -> dict[str, str]:
        """Upload an sdist made of ``files`` (plus a package), and a wheel if asked; hrefs by kind."""
        index = index or self.index
        paths = {"sdist": write_sdist(self.tmp, name, version, extra_files=files)}
        if wheel:
            paths["wheel"] = write_wheel(self.tmp, name, version)
        for path in paths.values():
            r = self.server.upload(index, path, self.auth)
            assert r.status_code == 200, r.text
        links = self.server.api("GET", f"/{index}/{name}", auth=self.auth).json()["result"][version]["+links"]
        hrefs = {lk["href"].rsplit("/", 1)[1]: lk["href"] for lk in links if lk["rel"] == "releasefile"}
        return {kind: hrefs[path.name] for kind, path in paths.items()}

    def runs(self, name: str, version: str = "1.0", index: str | None = None, events: bool = False) -> list[dict]:
        r = self.server.api("GET", f"/{index or self.index}/{name}/{version}/+testruns"
                            + ("?events" if events else ""), auth=self.auth)
        assert r.status_code == 200, r.text
        return r.json()["result"]


TOX_INI = "[testenv]\ndeps = pytest\ncommands = pytest {posargs} tests\n"
