"""Real, installable distributions built in-process for tests (no network, no build backend).

A wheel is a zip with a module, METADATA, WHEEL and a RECORD with correct
hashes; an sdist is a tar.gz with PKG-INFO and a setuptools pyproject, so pip
can build it offline when setuptools is available locally.
"""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import time
import zipfile
from pathlib import Path


def _metadata(name: str, version: str, *, requires_dist=(), requires_python=None, summary="",
              description="", description_content_type=None, classifiers=(), project_urls=()) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if summary:
        lines.append(f"Summary: {summary}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires_dist]
    lines += [f"Classifier: {c}" for c in classifiers]
    lines += [f"Project-URL: {u}" for u in project_urls]
    if description_content_type:
        lines.append(f"Description-Content-Type: {description_content_type}")
    text = "\n".join(lines) + "\n"
    if description:
        text += "\n" + description + ("\n" if not description.endswith("\n") else "")
    return text


def module_name(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def wheel_bytes(name: str, version: str, *, module_body: str | None = None, **meta) -> tuple[str, bytes]:
    """Return (filename, bytes) of a pure-python py3-none-any wheel."""
    dist = module_name(name)
    distinfo = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": (module_body if module_body is not None else f"VERSION = {version!r}\n"),
        f"{distinfo}/METADATA": _metadata(name, version, **meta),
        f"{distinfo}/WHEEL": "Wheel-Version: 1.0\nGenerator: devpi-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{distinfo}/top_level.txt": dist + "\n",
    }
    record = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
            zf.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
        record.append(f"{distinfo}/RECORD,,")
        zf.writestr(zipfile.ZipInfo(f"{distinfo}/RECORD", (2020, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


def sdist_bytes(name: str, version: str, *, extra_files: dict[str, str] | None = None, **meta) -> tuple[str, bytes]:
    """Return (filename, bytes) of a setuptools sdist (PEP 625 name)."""
    dist = module_name(name)
    root = f"{dist}-{version}"
    deps = ", ".join(repr(r).replace("'", '"') for r in meta.get("requires_dist", ()))
    rp = meta.get("requires_python")
    files = {
        "PKG-INFO": _metadata(name, version, **meta),
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{deps}]\n'
            + (f'requires-python = "{rp}"\n' if rp else "")
            + f'\n[tool.setuptools]\npackages = ["{dist}"]\n'),
        f"{dist}/__init__.py": f"VERSION = {version!r}\n",
        **(extra_files or {}),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            info.mtime = int(time.time())
            tf.addfile(info, io.BytesIO(data))
    return f"{root}.tar.gz", buf.getvalue()


def write_wheel(directory: Path, name: str, version: str, **kw) -> Path:
    filename, data = wheel_bytes(name, version, **kw)
    path = Path(directory) / filename
    path.write_bytes(data)
    return path


def write_sdist(directory: Path, name: str, version: str, **kw) -> Path:
    filename, data = sdist_bytes(name, version, **kw)
    path = Path(directory) / filename
    path.write_bytes(data)
    return path
