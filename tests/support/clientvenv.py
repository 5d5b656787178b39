"""A client-only install of this checkout (``pip install .``, no extras) in its own venv.

Built once per test session and shared by pytest-xdist workers (a file lock
in the session's common temp dir; a marker file written last, so a build that
died half way is redone). The checkout's packaging files and package folders
are copied first: building in place would leave ``build/`` and egg-info
behind in the worktree. Packages come only from the local sources the caller
names (``pip_sources``), never from a network index, and from wheels repacked
from this environment's own pure-Python installs of the client's requirements
(the machine's local index lacks a few of them, e.g. pkginfo, pyproject-api).
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
COPIED = ("setup.py", "pyproject.toml", "README.md", "client", "server", "web")
NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "no_proxy": "127.0.0.1,localhost"}


def venv_bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if sys.platform == "win32" else "bin") / name


def client_only_venv(shared_tmp: Path, pip_sources: list[str]) -> Path:
    """The venv (created on first call in this session), with ``pip install <checkout>`` done."""
    venv = shared_tmp / "client-only-venv"
    done = venv / "ready.json"
    with open(shared_tmp / "client-only-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        src = shared_tmp / "client-only-src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in COPIED:
            path = REPO / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=ignore)
            else:
                shutil.copy2(path, src / name)
        wheels = shared_tmp / "client-only-wheels"
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir()
        for dist in requirement_closure("devpi"):
            repack(dist, wheels)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = {**os.environ, **NO_NETWORK, "PIP_CONFIG_FILE": os.devnull}
        env.pop("PIP_NO_CACHE_DIR", None)  # pip's wheel cache is local and makes this faster
        proc = subprocess.run([str(venv_bin(venv, "python")), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", *pip_sources, "--find-links", str(wheels), str(src)],
                              env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"pip install of the checkout failed:\n{proc.stdout}\n{proc.stderr}"
        done.write_text(json.dumps({"source": str(src)}))
    return venv


def installed(venv: Path) -> dict[str, str]:
    """``pip list`` of the venv: canonical (lower-case, dashes) names to versions."""
    out = subprocess.run([str(venv_bin(venv, "python")), "-m", "pip", "list", "--format", "json",
                          "--disable-pip-version-check"], capture_output=True, text=True, check=True).stdout
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(out)}


def requirement_closure(name: str) -> list[metadata.Distribution]:
    """The installed distributions ``name`` needs without extras, and theirs, recursively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(line) for line in metadata.requires(name) or []]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        todo += [Requirement(line) for line in dist.requires or []]
    return list(seen.values())


def repack(dist: metadata.Distribution, dest: Path) -> Path | None:
    """A wheel of an installed pure-Python distribution, built from its RECORD (else None)."""
    wheel_meta = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: true" not in wheel_meta or not dist.files:
        return None
    name = dist.metadata["Name"].replace("-", "_").lower()
    version = dist.version
    info_dir = f"{name}-{version}.dist-info"
    target = dest / f"{name}-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in dist.files:
            rel = file.as_posix()
            if rel.startswith("..") or "__pycache__" in rel or rel.endswith(("RECORD", "INSTALLER", "REQUESTED")):
                continue
            parts = rel.split("/")
            if parts[0].endswith(".dist-info"):
                rel = "/".join([info_dir, *parts[1:]])
            if parts[-1] == "direct_url.json":
                continue
            data = Path(dist.locate_file(file)).read_bytes()
            zf.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{rel},sha256={digest},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return target
