"""Small helpers shared by the interop tests: running tools, writing tiny projects."""
from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test on the same (module-scoped) server uses."""
    return f"{prefix}{os.getpid()}x{next(_names)}"


def run(cmd: Sequence[str | os.PathLike], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        check: bool = True, timeout: float = 300, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a tool; on an unexpected exit code fail with its whole output (the tool's words, not ours)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, input=input if input is not None else "")
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed with exit code {proc.returncode}: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    return proc


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# A complete PEP 517 backend in one stdlib-only file, so that tox and pip can build the
# test projects in isolated environments without fetching setuptools from anywhere
# (and without spending seconds on installing it into every build env).
_BACKEND = r'''
"""Minimal in-tree PEP 517 backend of the interop test projects."""
import base64, hashlib, io, os, tarfile, tomllib, zipfile

def _project():
    with open("pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]

def _names():
    p = _project()
    return p, p["name"].replace("-", "_").replace(".", "_")

def _metadata():
    p, _ = _names()
    lines = ["Metadata-Version: 2.1", "Name: " + p["name"], "Version: " + p["version"],
             "Summary: " + p.get("description", "")]
    if p.get("requires-python"):
        lines.append("Requires-Python: " + p["requires-python"])
    lines += ["Requires-Dist: " + d for d in p.get("dependencies", [])]
    return ("\n".join(lines) + "\n").encode()

def _sources(module):
    for root, dirs, files in os.walk(module):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in sorted(files):
            yield os.path.join(root, name)

def get_requires_for_build_wheel(config_settings=None):
    return []

get_requires_for_build_sdist = get_requires_for_build_editable = get_requires_for_build_wheel

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    p, dist = _names()
    distinfo = f"{dist}-{p['version']}.dist-info"
    os.makedirs(os.path.join(metadata_directory, distinfo))
    with open(os.path.join(metadata_directory, distinfo, "METADATA"), "wb") as f:
        f.write(_metadata())
    return distinfo

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p, dist = _names()
    distinfo = f"{dist}-{p['version']}.dist-info"
    files = {path: open(path, "rb").read() for path in _sources(dist)}
    files[distinfo + "/METADATA"] = _metadata()
    files[distinfo + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: interop\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[distinfo + "/RECORD"] = ("\n".join(record + [distinfo + "/RECORD,,"]) + "\n").encode()
    name = f"{dist}-{p['version']}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name

build_editable = build_wheel

def build_sdist(sdist_directory, config_settings=None):
    p, dist = _names()
    root = f"{dist}-{p['version']}"
    name = root + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tf:
        for path in ["pyproject.toml", "interop_backend.py", *_sources(dist)]:
            tf.add(path, f"{root}/{path}")
        info = tarfile.TarInfo(f"{root}/PKG-INFO")
        data = _metadata()
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return name
'''


def write_project(directory: Path, name: str, version: str, *, dependencies: Sequence[str] = (),
                  tox_ini: str | None = None, backend: str = "setuptools") -> Path:
    """A tiny project (pyproject.toml only) that tox and `python -m build` can handle.

    backend "setuptools" is the common real-world case (builds need setuptools
    where they run); "intree" is the stdlib-only backend above, for builds that
    happen in isolated environments against our indexes. A tox configuration
    goes into ``[tool.tox] legacy_tox_ini`` so that it is part of the sdist
    (``devpi test`` runs tox from the unpacked sdist).
    """
    module = name.replace("-", "_").replace(".", "_")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / module).mkdir(exist_ok=True)
    (directory / module / "__init__.py").write_text(f'__version__ = "{version}"\n')
    deps = ", ".join(f'"{d}"' for d in dependencies)
    if backend == "intree":
        (directory / "interop_backend.py").write_text(_BACKEND.lstrip())
        build_system = 'requires = []\nbuild-backend = "interop_backend"\nbackend-path = ["."]'
    else:
        build_system = 'requires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"'
    text = (f"[build-system]\n{build_system}\n\n"
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
            f'description = "{name}: a project of the interop tests"\nrequires-python = ">=3.8"\n'
            f"dependencies = [{deps}]\n")
    if backend != "intree":
        text += f'\n[tool.setuptools]\npackages = ["{module}"]\n'
    if tox_ini is not None:
        text += '\n[tool.tox]\nlegacy_tox_ini = """\n' + textwrap.dedent(tox_ini) + '"""\n'
    (directory / "pyproject.toml").write_text(text)
    return directory


class DevpiClient:
    """The real `devpi` command of the original client, with its own client dir."""

    def __init__(self, env, clientdir: Path, sandbox: dict[str, str]):
        self.env = env
        self.clientdir = clientdir
        self.environ = {**sandbox, "PATH": f"{env.bin}{os.pathsep}{os.environ['PATH']}"}

    def __call__(self, *args: str, check: bool = True, cwd: Path | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [self.env.exe("devpi"), "--clientdir", self.clientdir, *args]
        proc = run(cmd, cwd=cwd, env=self.environ, check=check, timeout=timeout)
        # every reply must carry X-Devpi-Api-Version: 2, and no command may crash the client
        assert "unversioned reply" not in output(proc), output(proc)
        assert "Traceback (most recent call last)" not in output(proc), output(proc)
        return proc

    def login(self, server, user: str, password: str, index: str | None = None) -> None:
        self("use", server.url)
        self("login", user, "--password", password)
        if index:
            self("use", index)
