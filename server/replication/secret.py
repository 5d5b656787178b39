"""The shared secret between a primary and its replicas, read from a file.

A file, not an option: a command line is visible to every user of the machine. The file
is bounded (a secret is a line, not a megabyte someone pointed the option at by mistake),
must hold something, and is stripped (an editor's trailing newline is not part of it).
Comparison is constant-time (``hmac.compare_digest``) so a caller cannot learn the secret
byte by byte from answer times.

Instead of the shared secret, the file (and so the header) may hold an API token with the
``replicate`` scope (accounts/scope.py): a primary checks it like any token, so it can be
revoked and expires, and it works on a primary without a shared secret of its own.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

from ..accounts.api_tokens import looks_like_token

HEADER = "X-Devpi-Replica-Secret"
NOT_ENABLED = ("replication is not enabled on this server (it needs --replica-secret-file, or a token "
               "with the replicate scope)")
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


def refusal(expected: str | None, given: str | None,
            token_check: Callable[[str], str | None] | None = None) -> tuple[int, str] | None:
    """(status, message) for a request whose secret header is missing or wrong, else None.

    ``expected`` None: the server has no shared secret (only a replicate token can pass).
    ``token_check(value)``: None for a valid replicate token, else why it is refused."""
    if not given:
        if expected is None:
            return 404, NOT_ENABLED
        return 401, f"replication needs the shared secret in the {HEADER} header"
    if token_check is not None and looks_like_token(given):
        why = token_check(given)
        return None if why is None else (403, why)
    if expected is None:
        return 404, NOT_ENABLED
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
        return 403, "the replica secret is wrong"
    return None
