"""pip and uv install uploaded wheels and sdists (with a dependency) from the real server.

The sdist uses a tiny in-tree PEP 517 backend (stdlib only), so pip and uv build it in
an isolated environment without reaching any other index: the dependency and the
build both resolve through the server under test alone.
"""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from srv_helpers import new_stage, raw_upload, simple_json, twine_upload, unique
from support.dists import module_name, sdist_bytes, write_wheel

BACKEND = '''"""A stdlib-only PEP 517 backend: PKG-INFO becomes METADATA, the package dir the payload."""
import base64, hashlib, os, zipfile

def _info():
    text = open("PKG-INFO", encoding="utf-8").read()
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return text, fields["Name"], fields["Version"]

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    text, name, version = _info()
    dist = name.replace("-", "_").replace(".", "_").lower()
    distinfo = f"{dist}-{version}.dist-info"
    files = {f"{distinfo}/METADATA": text.encode(),
             f"{distinfo}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    for root, _, names in os.walk(dist):
        for n in names:
            path = os.path.join(root, n)
            files[path.replace(os.sep, "/")] = open(path, "rb").read()
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for p, d in files.items()] + [f"{distinfo}/RECORD,,"]
    files[f"{distinfo}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    filename = f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as zf:
        for p, d in files.items():
            zf.writestr(p, d)
    return filename
'''
PYPROJECT = '[build-system]\nrequires = []\nbuild-backend = "_backend"\nbackend-path = ["."]\n'


@pytest.fixture(scope="module")
def stage_with_app(sqlite_server, tmp_path_factory):
    """dep-lib 1.0 as a wheel (twine), app 1.0 as an sdist depending on dep-lib>=1.0."""
    s = sqlite_server
    auth, index = new_stage(s, "pw")
    dep, app = unique("dep-lib"), unique("app-pkg")
    dist = tmp_path_factory.mktemp("dist")
    wheel = write_wheel(dist, dep, "1.0", module_body="VALUE = 'dep 1.0'\n")
    fn, data = sdist_bytes(app, "1.0", requires_dist=[f"{dep}>=1.0"], extra_files={
        "pyproject.toml": PYPROJECT, "_backend.py": BACKEND,
        f"{module_name(app)}/__init__.py": f"from {module_name(dep)} import VALUE\n"})
    sdist = dist / fn
    sdist.write_bytes(data)
    p = twine_upload(s, index, auth[0], "pw", [wheel, sdist])
    assert p.returncode == 0, p.stdout + p.stderr
    return s, auth, index, dep, app


def _check_installed(target: Path, dep: str, app: str) -> None:
    code = f"import {module_name(app)} as a; print(a.VALUE)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(target)}, cwd=target)
    assert out.stdout.strip() == "dep 1.0"


def test_pip_install_sdist_with_dependency(stage_with_app, tmp_path):
    s, _, index, dep, app = stage_with_app
    target = tmp_path / "pip-target"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--target", str(target), "--index-url",
                        f"{s.url}/{index}/+simple/", app], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(x.name for x in target.glob("*.dist-info")) == sorted(
        [f"{module_name(dep)}-1.0.dist-info", f"{module_name(app)}-1.0.dist-info"])
    _check_installed(target, dep, app)


def test_pip_install_into_fresh_venv(stage_with_app, tmp_path):
    s, _, index, dep, app = stage_with_app
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "--index-url", f"{s.url}/{index}/+simple/", app],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    out = subprocess.run([str(py), "-c", f"import {module_name(app)} as a; print(a.VALUE)"],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "dep 1.0"


def _uv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uv", "pip", "install", "--python", sys.executable,
                           "--no-config", *args], capture_output=True, text=True, timeout=300)


def test_uv_install_sdist_with_dependency(stage_with_app, tmp_path):
    s, _, index, dep, app = stage_with_app
    target = tmp_path / "uv-target"
    p = _uv("--target", str(target), "--index-url", f"{s.url}/{index}/+simple/", app)
    assert p.returncode == 0, p.stdout + p.stderr
    _check_installed(target, dep, app)


def test_uv_exclude_newer_on_private_releases(stage_with_app, tmp_path):
    s, auth, index, dep, _ = stage_with_app
    newer = write_wheel(tmp_path, dep, "2.0", module_body="VALUE = 'dep 2.0'\n")
    r = raw_upload(s, index, newer.name, newer.read_bytes(), (auth[0], "pw"), name=dep, version="2.0")
    assert r.status_code == 200, r.text
    times = {f["filename"]: datetime.strptime(f["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
             for f in simple_json(s, index, dep)["files"]}
    t1 = next(t for name, t in times.items() if "-1.0-" in name)
    t2 = times[newer.name]
    assert t1 < t2
    cutoff = t1 + (t2 - t1) / 2  # RFC 3339 with microseconds
    for exclude, expected in ((cutoff.isoformat().replace("+00:00", "Z"), "1.0"), (None, "2.0")):
        target = tmp_path / f"t-{expected}"
        args = ["--exclude-newer", exclude] if exclude else []
        p = _uv("--target", str(target), "--index-url", f"{s.url}/{index}/+simple/", *args, dep)
        assert p.returncode == 0, p.stdout + p.stderr
        assert [x.name for x in target.glob("*.dist-info")] == [f"{module_name(dep)}-{expected}.dist-info"]
