"""The built-in ``s3://`` blob store as an internal plugin (server/plugins.py registers this
module by name): ``--blob-storage s3://BUCKET/PREFIX`` and ``--blob-redirect``. The store itself
is store/s3_blobstore.py, which knows nothing of hooks or the core.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..hooks import hookimpl
from ..store.s3_blobstore import MAX_REDIRECT, SCHEME, S3BlobStore, open_store

if TYPE_CHECKING:
    from ..core import Core


def _redirect_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_REDIRECT:
        raise argparse.ArgumentTypeError(f"must be whole seconds from 0 to {MAX_REDIRECT}, not {text!r}")
    return value


@hookimpl
def devpiserver_add_parser_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--blob-redirect", metavar="SECONDS", type=_redirect_seconds, default=0,
                        help="with an s3:// --blob-storage: answer file downloads with a redirect to a "
                             "presigned URL valid this long, so the bytes come from the object store "
                             "(the client checks their sha256; default: 0, the server streams them)")


@hookimpl
def devpiserver_blob_store(core: Core, url: str) -> S3BlobStore | None:
    if not url.startswith(SCHEME):
        return None
    return open_store(url, core.config.serverdir)


@hookimpl
def devpiserver_configure(core: Core, args: argparse.Namespace) -> None:
    seconds = getattr(args, "blob_redirect", 0)
    if isinstance(core.blobs, S3BlobStore):
        core.blobs.redirect_seconds = seconds
    elif seconds:
        raise SystemExit("devpi server: --blob-redirect needs an s3:// --blob-storage")

