"""A real pip install into a --target dir, and what it installed: shared by the mirror and ops tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pip_install(index_url: str, target: Path, *reqs: str) -> subprocess.CompletedProcess:
    """A real pip install into target, from index_url only, no cache."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
         "--no-input", "--target", str(target), "--index-url", index_url, *reqs],
        capture_output=True, text=True, timeout=300)


def installed(target: Path) -> dict[str, str]:
    """{normalized name: version} of the dist-infos in a --target dir."""
    out = {}
    for d in target.glob("*.dist-info"):
        name, version = d.name[: -len(".dist-info")].rsplit("-", 1)
        out[name.lower().replace("_", "-")] = version
    return out
