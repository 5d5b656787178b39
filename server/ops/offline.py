"""Open a server dir's storage without serving it: what every ``devpi`` admin command shares.

The options mean what they mean to ``devpi server`` (same names, same defaults), so an admin
copies ``--serverdir``/``--storage`` from the server's unit file.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import ServerConfig
from ..core import Core
from ..store.blob_marker import check_blob_storage, recorded_blob_storage
from ..store.s3_blobstore import SCHEME, open_store


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serverdir", type=Path,
                        default=Path(os.environ.get("DEVPI_SERVERDIR", "~/.devpi/server")),
                        help="server state directory (default: ~/.devpi/server, or $DEVPI_SERVERDIR)")
    parser.add_argument("--storage", metavar="URL", default=None,
                        help="database URL: sqlite:///PATH (default: inside the server dir) or postgresql://...")
    parser.add_argument("--blob-storage", metavar="URL", default=None,
                        help="where the server keeps file contents, when not in its server dir (s3://BUCKET/PREFIX); "
                             "default: what the server dir's last server recorded")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def config_of(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(serverdir=args.serverdir.expanduser().resolve(), storage_url=args.storage, offline=True)


def open_core(args: argparse.Namespace) -> Core:
    """The server dir's Core, migrated, as a server would open it (an existing dir only:
    an admin command never initialises a server dir by accident)."""
    config = config_of(args)
    if config.storage_url is None and not (config.serverdir / "devpi.sqlite").exists():
        raise SystemExit(f"devpi: error: no server dir at {config.serverdir} (no devpi.sqlite)")
    core = Core(config)
    url = getattr(args, "blob_storage", None) or recorded_blob_storage(config.serverdir)
    check_blob_storage(config.serverdir, url)
    if url:
        if not url.startswith(SCHEME):
            raise SystemExit(f"devpi: error: admin commands work on the local and s3:// blob stores only, "
                             f"not {url.split(':', 1)[0]!r}")
        core.blobs = open_store(url, config.serverdir)
    core.setup()
    return core
