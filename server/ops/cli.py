"""``devpi export|import|fsck|gc|gen-config``: one parser per command, each in its own module.

The client's ``devpi`` command forwards these words here (client/server.py), in-process, as
it does for ``devpi server``. A module is imported only when its command runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command word -> module under devpi.server.ops with ``register(parser)`` and ``run(args) -> int``
COMMANDS: dict[str, tuple[str, str]] = {
    "export": ("export_cmd", "write a consistent, versioned copy of a server dir (server may keep running)"),
    "import": ("importing", "fill a fresh server dir from an export (ours, or devpi-server 6.x's devpi-export)"),
    "fsck": ("fsck", "check every blob against its hash and every file row against a blob; --repair"),
    "gc": ("gc", "delete blobs no row references (after a grace period), and evict mirror files beyond a budget"),
    "gen-config": ("gen_config", "write an nginx site, a systemd unit and a logrotate file for this server"),
}


def main(argv: list[str]) -> int:
    """Run ``devpi COMMAND ARGS...`` for one of ``COMMANDS``; argv starts with the command word."""
    if not argv or argv[0] not in COMMANDS:
        print(f"devpi: error: expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    word, rest = argv[0], argv[1:]
    modname, help_text = COMMANDS[word]
    module = importlib.import_module(f"devpi.server.ops.{modname}")
    parser = argparse.ArgumentParser(prog=f"devpi {word}", description=help_text[0].upper() + help_text[1:] + ".")
    module.register(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"devpi {word}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as e:  # one readable line, never a traceback (unless --debug)
        if getattr(args, "debug", False):
            raise
        print(f"devpi {word}: error: {one_line(e)}", file=sys.stderr)
        return 1


def one_line(error: BaseException) -> str:
    """The error as one line: a database driver's own message (SQLAlchemy wraps it in
    several lines and a link), its first line only."""
    inner = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return f"{type(inner).__name__}: {lines[0] if lines else ''}"
