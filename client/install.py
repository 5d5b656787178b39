"""``devpi install``: run pip against the current index, logged in.

pip gets the index through ``PIP_INDEX_URL`` with the login token embedded
as URL credentials (pip sends them as Basic auth, which devpi accepts), so
private indexes with restricted read access work too.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from devpi.client.cli import add_command, add_index_option
from devpi.client.hub import Hub, mask_auth, url_with_auth

DESCRIPTION = """\
Install packages with pip from the current index.

  devpi install tinypkg                    into the venv of 'devpi use --venv', $VIRTUAL_ENV, or pip on PATH
  devpi install --venv .venv 'tinypkg>=1.0'
  devpi install -e .                       editable install of a checkout
  devpi install -r requirements.txt
  devpi install -l                         list installed packages
"""


FILES = "\0pkgspecs"  # -r without a value
ARCHIVES = (".whl", ".tar.gz", ".zip", ".tgz", ".tar.bz2")


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "install", run, help="install packages with pip from the current index",
                    description=DESCRIPTION)
    p.add_argument("pkgspecs", nargs="*", metavar="PKGSPEC", help="requirement(s) to install")
    add_index_option(p)
    p.add_argument("--venv", metavar="DIR", default=None,
                   help="virtualenv to install into (default: the one set with 'devpi use --venv', "
                        "then $VIRTUAL_ENV, then the pip on PATH)")
    p.add_argument("-l", "--list", action="store_true", help="list the installed packages (pip list)")
    p.add_argument("-e", "--editable", metavar="ARG", action="append", default=[],
                   help="install a project in editable mode (pip install -e ARG)")
    p.add_argument("-r", "--requirement", metavar="FILE", action="append", default=[], nargs="?", const=FILES,
                   help="install from a requirements file; without FILE (devpi-client's form) every "
                        "PKGSPEC is a requirements file")


def venv_python(venv: Path) -> Path:
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def pip_command(hub: Hub, venv_arg: str | None) -> list[str]:
    venv = venv_arg or hub.state.get("venvdir") or os.environ.get("VIRTUAL_ENV")
    if venv:
        python = venv_python(Path(venv).expanduser())
        if not python.exists():
            hub.fatal(f"{venv} is not a virtualenv (no {python}); create it with 'python -m venv {venv}'")
        return [str(python), "-m", "pip"]
    pip = shutil.which("pip") or shutil.which("pip3")
    if pip:
        return [pip]
    return [sys.executable, "-m", "pip"]


def run(hub: Hub, args: argparse.Namespace) -> int:
    pip = pip_command(hub, args.venv)
    if args.requirement:  # devpi-client's -r is a flag: the positionals naming files are requirements files
        files = [p for p in args.pkgspecs if Path(p).is_file() and not p.endswith(ARCHIVES)]
        args.requirement = [r for r in args.requirement if r != FILES] + files
        args.pkgspecs = [p for p in args.pkgspecs if p not in files]
    if args.list:
        return _call(hub, [*pip, "list"], os.environ.copy(), "pip list")
    if not (args.pkgspecs or args.editable or args.requirement):
        hub.fatal("nothing to install: give package names, -e DIR or -r FILE")
    info = hub.index_api(args.index)
    simple = info["index"] + "/+simple/"
    root = hub.stored_root_for(simple)
    login = hub.state.get_login(root) if root else None
    index_url = url_with_auth(simple, *login) if login else simple
    env = os.environ.copy()
    env["PIP_INDEX_URL"] = index_url
    env["PIP_PRE"] = "1"
    cmd = [*pip, "install", "-U"]
    for e in args.editable:
        cmd += ["-e", e]
    for r in args.requirement:
        cmd += ["-r", r]
    cmd += args.pkgspecs
    hub.info(f"-->  {' '.join(cmd)}  (PIP_INDEX_URL={mask_auth(index_url)})")
    return _call(hub, cmd, env, "pip install")


def _call(hub: Hub, cmd: list[str], env: dict[str, str], what: str) -> int:
    try:
        rc = subprocess.call(cmd, env=env)
    except OSError as e:
        hub.fatal(f"cannot run {cmd[0]}: {e}")
    if rc != 0:
        hub.fatal(f"{what} failed with exit code {rc}", exitcode=rc)
    return 0
