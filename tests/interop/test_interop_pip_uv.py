"""pip and uv install from a stage index that merges root/pypi (a mirror of the local upstream).

The world: ``app-pkg`` (uploaded to u/dev) needs ``local-dep`` (uploaded to
u/base, a base of u/dev) and ``up-dep<2`` (only on the upstream, reached
through root/pypi), which needs ``up-leaf``. Every tool must find all four
through the one index URL, fetch the right bytes and agree on the hashes; a
yanked ``up-dep`` 1.9 on the upstream must be passed over.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from interop.helpers import output, run, sha256, unique
from support.dists import write_wheel


@dataclass
class World:
    simple_url: str
    hashes: dict[str, str]  # filename -> sha256 of every file an install of app-pkg needs
    pins: dict[str, str]  # project -> version the resolution must pick


@pytest.fixture(scope="module")
def world(mserver, upstream, tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("world")
    user = unique("dana")
    auth = mserver.create_user(user, "pw")
    mserver.create_index(auth, "base")
    mserver.create_index(auth, "dev", bases=f"{user}/base,root/pypi")
    leaf = upstream.add_wheel("up-leaf", "1.0")
    dep = upstream.add_wheel("up-dep", "1.5", requires_dist=["up-leaf>=1"])
    upstream.add_wheel("up-dep", "2.0", requires_dist=["up-leaf>=1"])  # excluded by app-pkg's pin
    yanked = upstream.add_wheel("up-dep", "1.9", requires_dist=["up-leaf>=1"])  # PEP 592: never picked
    upstream.yank(yanked.filename, "broken")
    local = write_wheel(tmp, "local-dep", "1.0")
    app = write_wheel(tmp, "app-pkg", "1.0", requires_dist=["local-dep", "up-dep<2"])
    assert mserver.upload(f"{user}/base", local, (user, "pw")).status_code == 200
    assert mserver.upload(f"{user}/dev", app, (user, "pw")).status_code == 200
    hashes = {leaf.filename: leaf.sha256, dep.filename: dep.sha256, local.name: sha256(local),
              app.name: sha256(app)}
    pins = {"app-pkg": "1.0", "local-dep": "1.0", "up-dep": "1.5", "up-leaf": "1.0"}
    return World(f"{mserver.url}/{user}/dev/+simple/", hashes, pins)


def installed(target: Path) -> dict[str, str]:
    """project -> version of the dist-info directories in a --target dir."""
    found = {}
    for d in target.glob("*.dist-info"):
        name, version = d.name.removesuffix(".dist-info").rsplit("-", 1)
        found[name.replace("_", "-")] = version
    return found


def requirements_with_hashes(world: World, path: Path, *, break_one: bool = False) -> Path:
    lines = []
    for filename, digest in sorted(world.hashes.items()):
        name, version = filename.split("-")[:2]
        if break_one and name == "up_leaf":
            digest = "0" * 64
        lines.append(f"{name.replace('_', '-')}=={version} --hash=sha256:{digest}")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- pip ---------------------------------------------------------------------------------------------------
@pytest.fixture
def pip(tools, sandbox):
    env = tools("pip")

    def call(*args, check=True):
        return run([env.python, "-m", "pip", *args], env=sandbox, check=check)
    return call


@pytest.mark.compat("pip", "install with dependencies")
def test_pip_install_with_dependencies(pip, world, tmp_path):
    pip("install", "--target", tmp_path / "t", "--index-url", world.simple_url, "app-pkg")
    assert installed(tmp_path / "t") == world.pins


@pytest.mark.compat("pip", "install --require-hashes")
def test_pip_require_hashes(pip, world, tmp_path):
    req = requirements_with_hashes(world, tmp_path / "req.txt")
    pip("install", "--target", tmp_path / "t", "--index-url", world.simple_url, "--require-hashes", "-r", req)
    assert installed(tmp_path / "t") == world.pins
    bad = requirements_with_hashes(world, tmp_path / "bad.txt", break_one=True)
    proc = pip("install", "--target", tmp_path / "t2", "--index-url", world.simple_url, "--require-hashes",
               "-r", bad, check=False)
    assert proc.returncode != 0 and "DO NOT MATCH THE HASHES" in output(proc)


@pytest.mark.compat("pip", "download")
def test_pip_download(pip, world, tmp_path):
    pip("download", "-d", tmp_path / "d", "--index-url", world.simple_url, "app-pkg")
    assert {p.name: sha256(p) for p in (tmp_path / "d").iterdir()} == world.hashes


# -- uv ------------------------------------------------------------------------------------------------------
@pytest.fixture
def uv(tools, sandbox):
    env = tools("uv")

    def call(*args, check=True):
        return run([env.exe("uv"), *args], env=sandbox, check=check)
    call.python = env.python
    return call


@pytest.mark.compat("uv", "pip install with dependencies")
def test_uv_pip_install_with_dependencies(uv, world, tmp_path):
    uv("pip", "install", "--python", uv.python, "--target", tmp_path / "t", "--index-url", world.simple_url,
       "app-pkg")
    assert installed(tmp_path / "t") == world.pins


@pytest.mark.compat("uv", "pip install --require-hashes")
def test_uv_require_hashes(uv, world, tmp_path):
    req = requirements_with_hashes(world, tmp_path / "req.txt")
    uv("pip", "install", "--python", uv.python, "--target", tmp_path / "t", "--index-url", world.simple_url,
       "--require-hashes", "-r", req)
    assert installed(tmp_path / "t") == world.pins
    bad = requirements_with_hashes(world, tmp_path / "bad.txt", break_one=True)
    proc = uv("pip", "install", "--python", uv.python, "--target", tmp_path / "t2", "--index-url",
              world.simple_url, "--require-hashes", "-r", bad, check=False)
    assert proc.returncode != 0 and "hash" in output(proc).lower()


@pytest.mark.compat("uv", "pip compile")
def test_uv_pip_compile(uv, world, tmp_path):
    (tmp_path / "req.in").write_text("app-pkg\n")
    out = uv("pip", "compile", "--python", uv.python, "--index-url", world.simple_url, "--generate-hashes",
             "--no-header", "--no-annotate", tmp_path / "req.in").stdout
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+)", out, re.M))
    assert pins == world.pins, out
    hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", out))
    # uv lists every file of each pinned version; ours are among them
    assert set(world.hashes.values()) <= hashes, out
