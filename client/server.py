"""``devpi server ...``: start the server in this Python environment.

The client never imports ``devpi.server`` (it may not even be installed
where only the CLI is used); it replaces itself with
``python -m devpi.server ARGS`` so signals and exit codes belong to the
server process.  ``devpi server --help`` is therefore the server's help.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from devpi.client.cli import add_command


def exec_server(args: list[str]) -> int:
    """Replace this process with the server (on Windows: run it and pass on its exit code)."""
    cmd = [sys.executable, "-m", "devpi.server", *args]
    sys.stdout.flush()
    sys.stderr.flush()
    if sys.platform == "win32":
        return subprocess.call(cmd)
    os.execv(sys.executable, cmd)
    return 0  # not reached


def _run(hub: Any, args: argparse.Namespace) -> int:
    return exec_server(list(args.server_args))


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers, "server", _run,
        help="start the devpi server (same as 'python -m devpi.server'; see 'devpi server --help')",
        add_help=False,
    )
    p.add_argument("server_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
