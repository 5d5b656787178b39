"""doc/cli.md names every option of every `devpi` command (issue 30: "lists every option
with an example"), so an option added without its documentation shows here."""
from __future__ import annotations

from pathlib import Path

from devpi.client.main import build_parser

DOC = Path(__file__).resolve().parents[2] / "doc" / "cli.md"
# the server's own command line is documented in doc/server.md, the admin commands' in doc/operations.md
ELSEWHERE = {"server", "export", "import", "fsck", "gc", "gen-config"}


def test_every_long_option_of_every_command_is_in_cli_md():
    parser = build_parser()
    doc = DOC.read_text(encoding="utf-8")
    [subparsers] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    missing = []
    for name, sub in subparsers.choices.items():
        if name in ELSEWHERE:
            continue
        assert f"devpi {name}" in doc, f"`devpi {name}` is not in doc/cli.md"
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in doc:
                    missing.append(f"devpi {name} {option}")
    assert not missing, f"not in doc/cli.md: {missing}"
