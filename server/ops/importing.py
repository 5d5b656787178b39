"""``devpi import DIR``: fill a fresh server dir from an export.

Two formats are read, told apart by the file at the top of the directory:

- ``manifest.json``: ours (``devpi export``, import_ours.py, format in doc/operations.md);
- ``dataindex.json``: the original devpi-server 6.x's ``devpi-export`` (import_devpi6.py).

An import never merges into a server dir that holds anything: the target must be a missing or
empty directory (SQLite), or a database no server has initialised (PostgreSQL). The blobs are
written first and every row in one transaction, so an import that fails leaves no rows behind.
"""
from __future__ import annotations

import argparse
import importlib
import secrets
import shutil
import sys
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert

from ..core import Core
from ..store import schema
from ..store.migrate import ensure_schema
from ..store.storage import WriteTx, kv_get
from .offline import add_storage_options, config_of

# the file that names a format -> the module (under devpi.server.ops) that imports it
FORMATS: dict[str, str] = {
    "manifest.json": "import_ours",
    "dataindex.json": "import_devpi6",
}


class ImportRefused(Exception):
    """The source is not an export we read, or the target is not fresh."""


@dataclass
class ImportSummary:
    """What an import brought in, printed when it is done."""

    source_format: str
    users: int = 0
    indexes: int = 0
    projects: int = 0
    releases: int = 0
    files: int = 0
    docs: int = 0
    toxresults: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)  # one line each: what was changed or left out, and why

    def lines(self) -> list[str]:
        head = (f"imported from {self.source_format}: {self.users} users, {self.indexes} indexes, "
                f"{self.projects} projects, {self.releases} releases, {self.files} release files, "
                f"{self.docs} doc zips, {self.toxresults} test results ({self.bytes} bytes of files)")
        return [head, *(f"note: {n}" for n in self.notes)]


def detect(source: Path) -> str:
    """The importer module for the export in ``source``."""
    if not source.is_dir():
        raise ImportRefused(f"{source} is not a directory")
    for marker, module in FORMATS.items():
        if (source / marker).is_file():
            return module
    raise ImportRefused(f"{source} holds neither manifest.json (devpi export) nor dataindex.json "
                        "(devpi-server 6.x devpi-export)")


def initialise_state(tx: WriteTx, *, node_uuid: str | None = None, secret: str | None = None) -> None:
    """Write what a server's first start writes besides root and root/pypi (the secret that
    signs logins, the node uuid): an importer calls this in its transaction, with the values
    from the export when it carries them."""
    tx.conn.execute(insert(schema.kv).values(key="secret", value=secret or secrets.token_hex(32)))
    tx.conn.execute(insert(schema.kv).values(key="uuid", value=node_uuid or uuidlib.uuid4().hex))


def open_fresh_target(args: argparse.Namespace) -> Core:
    """The target's Core with the schema created and nothing else, or ImportRefused."""
    config = config_of(args)
    serverdir = config.serverdir
    if config.storage_url is None or config.storage_url.startswith("sqlite"):
        if serverdir.exists() and any(serverdir.iterdir()):
            raise ImportRefused(f"server dir {serverdir} is not empty; import only into a fresh one")
    elif (serverdir / "blobs").exists() and any((serverdir / "blobs").iterdir()):
        raise ImportRefused(f"server dir {serverdir} already holds blobs; import only into a fresh one")
    core = Core(config)
    ensure_schema(core.storage)
    with core.storage.read() as conn:
        if kv_get(conn, "secret") is not None:
            core.storage.close()
            raise ImportRefused(f"storage {config.storage} already holds a server; import only into a fresh one")
    return core


def register(parser: argparse.ArgumentParser) -> None:
    add_storage_options(parser)
    parser.add_argument("--root-passwd", metavar="PW", default=None,
                        help="root's password on the new server, where the export's hash cannot be carried "
                             "over (devpi-server 6.x hashes passwords with argon2)")
    parser.add_argument("directory", type=Path, help="the export to read")


def _empty_dir(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())


def _clear(path: Path) -> None:
    """Take out what a failed import wrote into a server dir that was empty before it, so the
    same command can be run again once the export is mended."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    source = args.directory.expanduser()
    serverdir = config_of(args).serverdir
    was_empty = _empty_dir(serverdir)
    try:
        modname = detect(source)
        core = open_fresh_target(args)
        core.config.root_passwd = getattr(args, "root_passwd", None)
    except ImportRefused as e:
        print(f"devpi import: error: {e}", file=sys.stderr)
        return 1
    done = False
    try:
        module = importlib.import_module(f"devpi.server.ops.{modname}")
        summary: ImportSummary = module.import_into(core, source, out)
        core.setup()  # what a server start does next: it must find the imported state complete
        done = True
    except ImportRefused as e:
        print(f"devpi import: error: {e}", file=sys.stderr)
        return 1
    finally:
        core.storage.close()
        if not done and was_empty:
            _clear(serverdir)
    for line in summary.lines():
        out(line)
    return 0
