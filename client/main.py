"""Entry point of the ``devpi`` command.

Subcommands live in one module each; ``COMMAND_MODULES`` lists them and
each provides ``register(subparsers)``.  A module that is not installed
(``test`` is added later) is skipped, so adding a command means adding a
module and its name here.  Heavy libraries are imported inside the command
functions, which keeps ``devpi --help`` well under 0.3 s.  Client plugins
(client/plugins.py) are loaded only when the command word is not a built-in
one (it may be a plugin's), for the top-level help and for ``--version``, so
``devpi upload`` pays nothing for an installed plugin (the help pays its
import: keyring's plugin, which twine brings along, adds about 60 ms).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from devpi.client.cli import Parser, add_generic_options
from devpi.client.errors import DevpiError

COMMAND_MODULES: tuple[str, ...] = (
    "use",
    "login",
    "token",
    "user",
    "index",
    "upload",
    "install",
    "listing",
    "test",
    "push",
    "remove",
    "yank",
    "getjson",
    "refresh",
    "server",
)

_VALUE_OPTIONS = ("--clientdir",)


def build_parser(plugins: Any = None) -> argparse.ArgumentParser:
    """The full parser, with every available command module (and the plugins' commands) registered."""
    parser = Parser(
        prog="devpi",
        description="devpi: use, upload to and manage a private Python package index.",
        epilog="Run 'devpi COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="store_true",
                        help="show the client version (and the server's, if one is in use)")
    add_generic_options(parser, top=True)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        modname = f"devpi.client.{name}"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue
            raise
        module.register(subparsers)
    if plugins is not None:
        plugins.add_commands(subparsers)
    parser.commands = frozenset(subparsers.choices)  # type: ignore[attr-defined]
    return parser


def _find_command(argv: list[str]) -> int | None:
    """Index of the command word (after global options), else None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUE_OPTIONS:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return i
    return None


POSARGS_COMMANDS = ("test",)


def split_posargs(argv: list[str], pos: int | None) -> tuple[list[str], list[str] | None]:
    """``devpi test A B -- ARGS``: ARGS (for the test command) split off before parsing.

    ``test`` takes several package specs, as devpi-client's does, so argparse alone could not
    tell the last spec from the first argument after ``--``.
    """
    if pos is None or argv[pos] not in POSARGS_COMMANDS or "--" not in argv[pos:]:
        return argv, None
    cut = argv.index("--", pos)
    return argv[:cut], argv[cut + 1:]


def main(argv: list[str] | None = None) -> int:
    """Run one devpi command; returns the exit code (errors are one line on stderr)."""
    if argv is None:
        argv = sys.argv[1:]
    pos = _find_command(argv)
    if pos is not None and argv[pos] == "server":
        from devpi.client.server import run_server

        return run_server(argv[pos + 1:])
    if pos is not None and argv[pos] in ("export", "import", "fsck", "gc", "gen-config"):
        from devpi.client.server import run_admin

        return run_admin(argv[pos:])

    parser = build_parser()
    if pos is None or argv[pos] not in parser.commands:  # type: ignore[attr-defined]
        from devpi.client.plugins import get_plugins

        parser = build_parser(get_plugins())
    argv, posargs = split_posargs(argv, pos)
    args = parser.parse_args(argv)
    if posargs is not None:
        args.posargs = posargs
    debug = bool(getattr(args, "debug", False))
    try:
        from devpi.client.hub import Hub

        hub = Hub(args)
        if args.version:
            from devpi.client.version import show_version

            return show_version(hub) or 0
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 0
        return func(hub, args) or 0
    except DevpiError as e:
        print(f"devpi: error: {e.message}", file=sys.stderr, flush=True)
        return e.exitcode
    except KeyboardInterrupt:
        print("devpi: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into 'head' etc.: not an error worth a message
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except Exception as e:
        if debug:
            raise
        print(
            f"devpi: internal error: {type(e).__name__}: {' '.join(str(e).split())} "
            "(run with --debug for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
