"""Helpers of the CLI tests: run ``devpi`` like a user does, write tiny projects."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path


def devpi_command() -> list[str]:
    """The installed console script next to this Python, else ``python -m devpi.client``."""
    script = Path(sys.executable).parent / ("devpi.exe" if sys.platform == "win32" else "devpi")
    if script.exists():
        return [str(script)]
    found = shutil.which("devpi")
    if found:
        return [found]
    return [sys.executable, "-m", "devpi.client"]


@dataclass
class Result:
    args: tuple[str, ...]
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


class DevpiCLI:
    """Runs ``devpi ARGS`` in a subprocess with a private client dir."""

    def __init__(self, clientdir: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.clientdir = clientdir
        self.cwd = cwd
        self.env = dict(os.environ)
        for key in ("DEVPI_INDEX", "DEVPI_USER", "VIRTUAL_ENV", "PIP_INDEX_URL", "PIP_CONFIG_FILE",
                    "UV_CONFIG_FILE"):
            self.env.pop(key, None)
        self.env["DEVPI_CLIENTDIR"] = str(clientdir)
        self.env["no_proxy"] = self.env["NO_PROXY"] = "127.0.0.1,localhost"
        self.env["PYTHONWARNINGS"] = "ignore"
        if env:
            self.env.update(env)

    def run(self, *args: str, input: str | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 300) -> Result:
        full_env = {**self.env, **(env or {})}
        proc = subprocess.run(
            [*devpi_command(), *args], input=input if input is not None else "", capture_output=True,
            text=True, cwd=str(cwd or self.cwd), env=full_env, timeout=timeout,
        )
        return Result(args, proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kw) -> str:
        """Run and require success; returns stdout."""
        r = self.run(*args, **kw)
        assert r.rc == 0, f"devpi {' '.join(args)} failed ({r.rc}):\nstdout:\n{r.out}\nstderr:\n{r.err}"
        assert "Traceback" not in r.err, r.err
        return r.out

    def fail(self, *args: str, rc: int | None = None, **kw) -> str:
        """Run and require the CLI error convention: non-zero exit, ONE stderr line, no traceback."""
        r = self.run(*args, **kw)
        assert r.rc != 0, f"devpi {' '.join(args)} unexpectedly succeeded:\n{r.out}"
        if rc is not None:
            assert r.rc == rc, (r.rc, r.err)
        assert "Traceback" not in r.err and "Traceback" not in r.out, r.err
        assert len(r.err_lines) == 1, f"expected one error line, got:\n{r.err}"
        return r.err_lines[0]


def write_project(base: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A tiny pyproject-based project (setuptools backend) as a user would have it."""
    proj = base / name
    pkg = proj / "src" / name
    pkg.mkdir(parents=True)
    (proj / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "{version}"
        description = "a tiny test project"
        readme = "README.md"
        requires-python = ">=3.8"
        classifiers = ["Programming Language :: Python :: 3"]
        """))
    (proj / "README.md").write_text(f"# {name}\n\nA tiny project.\n")
    (pkg / "__init__.py").write_text(f'VERSION = "{version}"\n')
    return proj


def make_sdist(path: Path, name: str = "tinypkg", version: str = "1.0") -> None:
    """A minimal valid sdist written by hand (no build needed)."""
    import io
    import tarfile

    pkginfo = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: hand made\n".encode()
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(pkginfo)
        tf.addfile(info, io.BytesIO(pkginfo))


def write_pypirc(tmp_path: Path, sections: dict[str, dict[str, str]]) -> Path:
    path = tmp_path / "pypirc"
    lines = ["[distutils]", "index-servers =", *[f"    {s}" for s in sections], ""]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path
