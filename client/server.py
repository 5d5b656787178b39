"""``devpi server ...``: run the server in this process.

The server's start-up is most of the time to its first answer, so the CLI
does not start a second interpreter: it imports ``devpi.server.main`` and runs
it here, with the same arguments ``python -m devpi.server`` takes (``devpi
server --help`` is therefore the server's help). Signals and the exit code
belong to this process, as they did when it replaced itself with the server.
Where the server cannot be imported it falls back to running ``python -m
devpi.server``: in a client-only install (``pip install devpi`` without the
``server`` extra) that prints one line saying what to install, not a
traceback (server/__main__.py, server/extra_check.py).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from devpi.client.cli import add_command


def run_server(args: list[str]) -> int:
    """Run the server with ``args`` and return its exit code."""
    try:
        from devpi.server.main import main as server_main
    except ModuleNotFoundError:
        # the server's package or its libraries are missing: ``python -m devpi.server`` runs a
        # server found elsewhere on the path, or says in one line what to install (its __main__)
        return _exec_interpreter(args)
    return server_main(args)


def _exec_interpreter(args: list[str]) -> int:
    """Replace this process with ``python -m devpi.server`` (on Windows: run it)."""
    cmd = [sys.executable, "-m", "devpi.server", *args]
    sys.stdout.flush()
    sys.stderr.flush()
    if sys.platform == "win32":
        return subprocess.call(cmd)
    os.execv(sys.executable, cmd)
    return 0  # not reached


def _run(hub: Any, args: argparse.Namespace) -> int:
    return run_server(list(args.server_args))


def run_admin(args: list[str]) -> int:
    """Run ``devpi export|import|fsck|gc|gen-config`` (server/ops/cli.py) in this process."""
    try:
        from devpi.server.ops.cli import main as ops_main
    except ModuleNotFoundError as e:
        from devpi.server.extra_check import server_extra_error

        print(server_extra_error(e), file=sys.stderr)
        return 1
    return ops_main(args)


# admin commands that work on a server dir (the server's libraries do the work): word -> help
ADMIN_COMMANDS = {
    "export": "write a consistent copy of a server dir (see 'devpi export --help')",
    "import": "fill a fresh server dir from an export, ours or devpi-server 6.x's",
    "fsck": "check the server dir's blobs and rows; --repair quarantines bad blobs",
    "gc": "delete unreferenced blobs and evict mirror files beyond a budget",
    "gen-config": "write an nginx site, a systemd unit and a logrotate file",
}


def register(subparsers: Any) -> None:
    for word, help_text in ADMIN_COMMANDS.items():
        admin = add_command(subparsers, word, lambda hub, args: run_admin([args.admin_word, *args.admin_args]),
                            help=help_text, add_help=False)
        admin.add_argument("admin_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        admin.set_defaults(admin_word=word)
    p = add_command(
        subparsers, "server", _run,
        help="start the devpi server (same as 'python -m devpi.server'; see 'devpi server --help')",
        add_help=False,
    )
    p.add_argument("server_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
