"""argparse helpers shared by the command modules.

Kept separate from main.py so a command module (including a later
``devpi.client.test``) can register itself with ``add_command`` without
importing main.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

CommandFunc = Callable[[Any, argparse.Namespace], "int | None"]


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are a single line (exit code 2, like argparse).

    A command's parser (``strict``) reports arguments it does not know itself:
    argparse would hand them up to the top-level parser, whose message then
    names ``devpi`` and points at ``devpi --help`` instead of the command's help.
    """

    strict = False

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self.strict:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def add_generic_options(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """Options every command accepts, before or after the command name.

    On subcommands the defaults are SUPPRESS so a value given before the
    command name (``devpi --debug use``) is not overwritten by the subparser.
    """
    dflt: Any = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--clientdir", metavar="DIR",
        help="directory for the client state (current server/index, login tokens); "
             "default: $DEVPI_CLIENTDIR or the per-user config dir",
        **({"default": os.environ.get("DEVPI_CLIENTDIR")} if top else dflt),
    )
    parser.add_argument("-v", "--verbose", action="count", help="more output (repeatable)",
                        **({"default": 0} if top else dflt))
    parser.add_argument("--debug", action="store_true", help="show HTTP requests and tracebacks",
                        **({"default": False} if top else dflt))
    parser.add_argument("-y", "--yes", dest="yes", action="store_true",
                        help="answer yes to every confirmation question",
                        **({"default": False} if top else dflt))


def add_command(
    subparsers: Any,
    name: str,
    func: CommandFunc,
    help: str,
    description: str | None = None,
    aliases: tuple[str, ...] = (),
    epilog: str | None = None,
    add_help: bool = True,
) -> argparse.ArgumentParser:
    """Create the parser of one subcommand and bind its function."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        aliases=list(aliases),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=add_help,
    )
    if isinstance(parser, Parser):
        parser.strict = True
    add_generic_options(parser)
    parser.set_defaults(func=func, command=name)
    return parser


def add_index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index", metavar="INDEX", default=None,
        help="use INDEX (USER/INDEX, INDEX of the logged-in user, or URL) instead of the current one "
             "(also $DEVPI_INDEX)",
    )
