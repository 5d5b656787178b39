"""Real third-party tools, each in its own cached virtualenv.

The interop suite drives the tools people already use (the original
devpi-client, pip, uv, twine, tox, pypi-simple) as separate programs, never as
libraries imported into the test process: their own venv, their own
dependencies, their own console scripts. The original devpi-client installs a
`devpi` command too, so it must never share a venv (or a PATH entry) with ours.

Venvs are created once per (tool, pinned version, Python) under
``$DEVPI_INTEROP_CACHE`` (default ``~/.cache/devpi-interop``) and reused by
later runs. Creating one needs the package registry, reached through this
machine's normal pip configuration: the tests' isolation (``PIP_CONFIG_FILE``
pointing at /dev/null, no find-links, ``UV_NO_CONFIG``) is undone for that
``pip install`` only. A file lock makes concurrent pytest-xdist workers wait
for each other instead of building the same venv twice, and a marker file
written last means an interrupted build is thrown away and redone.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PYTAG = f"py{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass(frozen=True)
class Tool:
    """One tool: its display name, the version under test and what to install next to it."""

    name: str
    version: str
    requirements: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}-{PYTAG}"


SETUPTOOLS = "setuptools==84.2.1"
TOX = "tox==4.67.15"
UV = "uv==0.13.9"

# Pinned, so that a cached venv is exactly what the compatibility matrix claims.
TOOLS: dict[str, Tool] = {t.name: t for t in [
    # build + setuptools + wheel: `devpi upload --no-isolation` builds offline; tox: `devpi test`.
    Tool("devpi-client", "7.3.0", ("devpi-client==7.3.0", TOX, SETUPTOOLS, "wheel==0.48.0", "build==1.6.1")),
    Tool("pip", "26.3", ("pip==26.3",)),
    Tool("uv", "0.13.9", (UV,)),
    Tool("twine", "7.0.0", ("twine==7.0.0",)),
    Tool("tox", "4.67.15", (TOX,)),
    Tool("tox-uv", "1.37.1", (TOX, "tox-uv==1.37.1", UV)),
    Tool("pypi-simple", "1.8.0", ("pypi-simple==1.8.0",)),
    # the original server, whose devpi-export output `devpi import` reads (tests/ops)
    Tool("devpi-server", "6.20.3", ("devpi-server==6.20.3", "setuptools==81.0.0")),  # pyramid needs pkg_resources
]}

# Variables tests/conftest.py sets or removes to keep clients away from this machine's
# pip configuration; undone (to the values the test run started with) for venv creation.
_ISOLATION_KEYS = ("PIP_CONFIG_FILE", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                   "PIP_NO_CACHE_DIR", "UV_NO_CONFIG", "UV_NO_CACHE", "PIP_DISABLE_PIP_VERSION_CHECK")


def cache_root() -> Path:
    configured = os.environ.get("DEVPI_INTEROP_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "devpi-interop"


def _read_environ(pid: int | str) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def original_environ() -> dict[str, str]:
    """The environment the test run was started with, as far as pip configuration goes.

    tests/conftest.py changes ``os.environ`` at import time; the kernel still
    holds the environment the process was exec'd with. An xdist worker was
    started by the (already changed) controller, so its parent's is the original.
    """
    env = dict(os.environ)
    for key in _ISOLATION_KEYS:
        env.pop(key, None)
    started = _read_environ(os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else "self")
    if started is not None:
        env.update({k: started[k] for k in _ISOLATION_KEYS if k in started})
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        env.pop("PIP_CONFIG_FILE")  # not found: never isolate the registry look-up
    return env


class FileLock:
    """An exclusive flock on *path* (waits for other processes holding it)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def _host_pip_can_target() -> bool:
    """pip >= 22.3 installs into another interpreter (``--python``): no ensurepip per venv."""
    try:
        import pip
    except ImportError:
        return False
    major, minor = (int(x) for x in pip.__version__.split(".")[:2])
    return (major, minor) >= (22, 3)


def _create(path: Path, requirements: tuple[str, ...], log: Path) -> None:
    """A venv at *path* with *requirements*, installed by pip with this machine's pip configuration.

    ensurepip costs many seconds per venv on a slow disk, so when the host pip can
    install into another interpreter the venv is made without pip of its own.
    """
    env = original_environ()
    targeted = _host_pip_can_target()
    venv = [sys.executable, "-m", "venv", *(["--without-pip"] if targeted else []), str(path)]
    python = path / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)] if targeted else [str(python), "-m", "pip"]
    cmd = [*pip, "install", "--disable-pip-version-check", "--upgrade", *requirements]
    with open(log, "w") as out:
        for step in (venv, cmd):
            out.write("$ " + " ".join(step) + "\n")
            out.flush()
            proc = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
            if proc.returncode:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"creating {path.name} failed ({proc.returncode}), see {log}:\n{tail}")


@dataclass
class ToolEnv:
    """A ready venv of one tool."""

    tool: Tool
    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def exe(self, name: str) -> Path:
        return self.bin / name


def tool_env(name: str) -> ToolEnv:
    """The venv of tool *name* (see TOOLS), created on first use."""
    tool = TOOLS[name]
    path = cache_root() / tool.key
    marker = path / "devpi-interop-ready.json"
    spec = {"requirements": list(tool.requirements), "python": sys.version}
    with FileLock(cache_root() / f"{tool.key}.lock"):
        if not (marker.exists() and json.loads(marker.read_text()) == spec):
            shutil.rmtree(path, ignore_errors=True)
            _create(path, tool.requirements, cache_root() / f"{tool.key}.log")
            marker.write_text(json.dumps(spec))
    return ToolEnv(tool, path)
