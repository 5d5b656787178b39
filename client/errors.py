"""Exceptions that end a command with one readable line instead of a traceback."""
from __future__ import annotations


class DevpiError(Exception):
    """A failure the user can act on; main() prints it as one line and exits.

    Raised anywhere in a command so that deep helpers need not know how
    errors are reported.
    """

    def __init__(self, message: str, exitcode: int = 1) -> None:
        super().__init__(message)
        self.message = one_line(message)
        self.exitcode = exitcode


def one_line(text: str) -> str:
    """Collapse server messages (which may contain blank lines) into one line."""
    return " ".join(str(text).split())
