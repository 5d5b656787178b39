"""The shared secret between a primary and its replicas, read from a file.

A file, not an option: a command line is visible to every user of the machine. The file
is bounded (a secret is a line, not a megabyte someone pointed the option at by mistake),
must hold something, and is stripped (an editor's trailing newline is not part of it).
Comparison is constant-time (``hmac.compare_digest``) so a caller cannot learn the secret
byte by byte from answer times.
"""
from __future__ import annotations

import hmac
from pathlib import Path

HEADER = "X-Devpi-Replica-Secret"
MAX_FILE = 4096  # bytes a secret file may hold
MIN_LENGTH = 16  # characters a secret must have: a short one is guessed


def read_secret_file(path: Path) -> str:
    """The secret in ``path``, or SystemExit with one readable line."""
    where = f"devpi server: --replica-secret-file {path}"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as e:
        raise SystemExit(f"{where}: {e.strerror}") from None
    if len(data) > MAX_FILE:
        raise SystemExit(f"{where}: larger than {MAX_FILE} bytes; a secret is one line")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SystemExit(f"{where}: not UTF-8 text") from None
    if not text:
        raise SystemExit(f"{where}: empty")
    if len(text) < MIN_LENGTH or any(c.isspace() or not c.isprintable() for c in text):
        raise SystemExit(f"{where}: the secret must be at least {MIN_LENGTH} printable characters "
                         "without spaces (e.g. `openssl rand -hex 32`)")
    return text


def refusal(expected: str, given: str | None) -> tuple[int, str] | None:
    """(status, message) for a request whose secret header is missing or wrong, else None."""
    if not given:
        return 401, f"replication needs the shared secret in the {HEADER} header"
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
        return 403, "the replica secret is wrong"
    return None
