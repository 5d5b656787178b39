"""``devpi gc``: delete blobs no row has named for the grace period, and, with
``--mirror-cache-size``, evict cached mirror files beyond the budget first.

The same work as the server's background task (runtime/disk_keeper.py), on demand and
safe beside running servers: one collection at a time per server dir (a lock file), and
a collection killed half-way leaves nothing half-done (doc/operations.md, "Disk budget").
"""
from __future__ import annotations

import argparse
import json

from ..config import parse_budget
from ..store.blobstore import BlobStore
from ..store.reachability import DEFAULT_GRACE, collect
from .offline import add_storage_options, open_core


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text!r}")
    return value


def register(parser: argparse.ArgumentParser) -> None:
    add_storage_options(parser)
    parser.add_argument("--grace", metavar="SECONDS", type=_seconds, default=DEFAULT_GRACE,
                        help="delete a blob only once it has been unreferenced this long, and its file is "
                             f"as old: longer than any export takes (default: {int(DEFAULT_GRACE)})")
    parser.add_argument("--mirror-cache-size", metavar="SIZE", type=parse_budget, default=None,
                        help="evict cached mirror files, least recently used first, until they fit SIZE "
                             "(e.g. 20G); uploaded files are never evicted")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    core = open_core(args)
    result: dict = {}
    try:
        if args.mirror_cache_size is not None:
            if core.blobs.__class__ is not BlobStore:
                raise SystemExit("devpi gc: --mirror-cache-size works on the local blob store only")
            from ..mirror.cache_budget import evict

            result["eviction"] = evict(core.storage, core.blobs, args.mirror_cache_size, wait=True).as_dict()
        result["collection"] = collect(core.storage, core.blobs, args.grace, wait=True).as_dict()
    finally:
        core.storage.close()
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    if "eviction" in result:
        e = result["eviction"]
        print(f"mirror cache: {e['cache_bytes']} bytes, budget {e['budget']}: evicted {e['evicted']} files, "
              f"{e['evicted_bytes']} bytes freed")
    c = result["collection"]
    print(f"blobs: {c['blobs']} ({c['bytes']} bytes), {c['unreferenced']} unreferenced: deleted {c['deleted']} "
          f"({c['deleted_bytes']} bytes), {c['kept_young']} kept until their grace period ends")
    if c["odd"]:
        print(f"left alone {len(c['odd'])} entries in the blob directories that are not blobs (see devpi fsck)")
    return 0
