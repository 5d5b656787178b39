"""Every command-line option of the original devpi-client 7.3 is accepted by our ``devpi``.

People bring CI scripts written for devpi-client; an option we do not know
ends such a script with argparse's exit code 2. This test reads the option
list of each subcommand from devpi-client 7.3's own ``--help`` (run from its
interop venv, see tests/interop/toolenv.py) and parses the same option with
our parser (``devpi.client.main.build_parser``): a flag must parse without a
value, an option with a metavar with one. What we deliberately do not accept
is listed, with the reason, in ``interop.compat.OPTION_EXCEPTIONS`` -- the
same list doc/compatibility.md shows -- so a new option of devpi-client (or
one of ours that goes missing) turns this test red instead of a user's CI.

What each newly accepted option *does* is checked by the behaviour tests in
test_cli_habits.py and tests/testruns/test_devpi_test.py.
"""
from __future__ import annotations

import contextlib
import io
import re
import subprocess
from dataclasses import dataclass

import pytest
from devpi.client.main import build_parser
from interop.compat import OPTION_EXCEPTIONS
from interop.toolenv import tool_env

pytestmark = pytest.mark.interop

_OPTION_LINE = re.compile(r"^  (-.*?)(?:\s{2,}|$)")
_TOP_COMMAND = None  # key of the top-level (generic) options


@dataclass(frozen=True)
class Option:
    """One option of devpi-client's help: all its spellings and the value it takes (metavar or choices)."""

    command: str | None
    names: tuple[str, ...]
    metavar: str | None

    @property
    def value(self) -> str | None:
        """A value to parse with: the first of the choices, else a plain word."""
        if self.metavar is None:
            return None
        if self.metavar.startswith("{"):
            return self.metavar.strip("{}").split(",")[0]
        return "x"


def parse_help(text: str, command: str | None) -> list[Option]:
    """The options of one argparse ``--help`` text (``-h`` left out).

    Option lines are indented by exactly two spaces; the spellings are separated
    by ", " and each may be followed by its metavar (``--select SELECTOR, -s SELECTOR``).
    """
    options = []
    for line in text.splitlines():
        m = _OPTION_LINE.match(line)
        if not m:
            continue
        names, metavar = [], None
        for spelling in m.group(1).split(", "):
            name, _, meta = spelling.partition(" ")
            names.append(name)
            metavar = meta or metavar
        if "-h" in names or "--help" in names:
            continue
        options.append(Option(command, tuple(names), metavar))
    return options


def original_options() -> tuple[list[str], list[Option]]:
    """(commands, options) of devpi-client 7.3, read from its ``--help`` output."""
    exe = tool_env("devpi-client").exe("devpi")

    def helptext(*args: str) -> str:
        proc = subprocess.run([str(exe), *args, "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    top = helptext()
    m = re.search(r"\{([a-z,]+)\}", top)
    assert m, top
    commands = m.group(1).split(",")
    options = parse_help(top, _TOP_COMMAND)
    for command in commands:
        options += parse_help(helptext(command), command)
    return commands, options


def parse_exit(argv: list[str]) -> int:
    """Exit code of parsing ``argv`` with our parser (0: parsed), its messages swallowed."""
    parser = build_parser()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            return int(e.code or 0)
    return 0


def accepted(option: Option, name: str) -> bool:
    """Whether our parser takes ``name`` the way devpi-client does (with or without a positional).

    A flag is followed by another option (``-v``): an option of ours that wants a value
    there would take the next word of a devpi-client command line away from it.
    """
    words = [name, "-v"] if option.value is None else [name, option.value]
    head = [] if option.command is None else [option.command]
    return any(parse_exit([*head, *words, *tail]) == 0 for tail in ([], ["x"], ["x", "y"]))


@pytest.fixture(scope="module")
def original() -> tuple[list[str], list[Option]]:
    return original_options()


def test_help_parser_reads_every_option(original):
    """The help parsing itself: it must find the options we know devpi-client 7.3 has (else
    a change of help layout would make the parity test below vacuous)."""
    commands, options = original
    assert {"use", "upload", "test", "push", "list", "install", "index", "user"} <= set(commands)
    by_command = {(o.command, n): o for o in options for n in o.names}
    assert by_command[("use", "-t")].names == ("-t", "--pip-set-trusted")
    assert by_command[("use", "-t")].value == "yes"
    assert by_command[("test", "--select")].names == ("--select", "-s")
    assert by_command[("upload", "--formats")].metavar == "FORMATS"
    assert by_command[("upload", "--sdist")].metavar is None
    assert (None, "--clientdir") in by_command
    assert len(options) > 60


def test_every_command_of_devpi_client_exists(original):
    commands, _ = original
    ours = build_parser().commands  # type: ignore[attr-defined]
    assert [c for c in commands if c not in ours] == []


def test_every_option_of_devpi_client_is_accepted(original):
    """Each spelling of each option parses, except the documented exceptions; and every exception
    is still needed (a stale entry would hide nothing but still mislead the docs)."""
    _, options = original
    missing = []
    excepted = set()
    for option in options:
        for name in option.names:
            key = (option.command or "", name)
            if key in OPTION_EXCEPTIONS:
                excepted.add(key)
                assert not accepted(option, name), f"{key} is accepted now: remove it from OPTION_EXCEPTIONS"
                continue
            if not accepted(option, name):
                missing.append(f"devpi {option.command or ''} {name} {option.metavar or ''}".replace("  ", " "))
    assert missing == [], "options of devpi-client 7.3 that our devpi refuses:\n" + "\n".join(missing)
    assert set(OPTION_EXCEPTIONS) - excepted == set(), "OPTION_EXCEPTIONS names options devpi-client has not"
