"""``devpi fsck``: check a server dir's blobs and file rows (store/integrity.py); ``--repair``.

Exit status: 0 when nothing is wrong, 1 when something is (after a repair too: what was
repaired is listed, and a private file with bad bytes stays a problem until restored
from a backup). Safe beside a running server.
"""
from __future__ import annotations

import argparse
import json

from ..repos.static_view import RESET_REQUEST
from ..store.integrity import QUARANTINE, FsckReport, check
from .offline import add_storage_options, open_core

SHOWN = 50  # findings listed per kind; the counts cover them all


def register(parser: argparse.ArgumentParser) -> None:
    add_storage_options(parser)
    parser.add_argument("--repair", action="store_true",
                        help=f"move blobs that do not match their hash to <serverdir>/{QUARANTINE}/ and make "
                             "the mirror files among them download again on the next request")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    core = open_core(args)
    try:
        report = check(core.storage, core.blobs, core.config.serverdir, repair=args.repair)
    finally:
        core.storage.close()
    if report.quarantined:  # a --static-dir holds hard links to them: emptied at the next start
        (core.config.serverdir / RESET_REQUEST).touch()
    if args.json:
        print(json.dumps(as_dict(report), indent=1))
    else:
        for line in lines(report, args.repair):
            print(line)
    return 1 if report.problems else 0


def as_dict(report: FsckReport) -> dict:
    def findings(items):
        return [{"kind": f.kind, "what": f.what, "sha256": f.detail} for f in items]

    return {"blobs": report.blobs, "bytes": report.bytes, "rows": report.rows, "orphans": report.orphans,
            "problems": report.problems, "corrupt_blobs": report.corrupt, "odd_entries": report.odd,
            "private_files": findings(report.private_bad), "mirror_files": findings(report.mirror_bad),
            "core_metadata": findings(report.metadata_bad), "quarantined": report.quarantined,
            "refetch": report.refetch}


def lines(report: FsckReport, repaired: bool) -> list[str]:
    out = [f"checked {report.blobs} blobs ({report.bytes} bytes) and {report.rows} file rows",
           f"orphans (no row names them; the garbage collector deletes them after its grace period): "
           f"{report.orphans}"]
    groups = [
        ("blobs whose bytes do not match their name", [(sha, "") for sha in report.corrupt]),
        ("entries in the blob directories that are not blobs (left alone)", [(p, "") for p in report.odd]),
        ("private files with a bad or missing blob (restore them from a backup)",
         [(f"{f.what}", f.kind) for f in report.private_bad]),
        ("mirror files with a bad or missing blob", [(f"{f.what}", f.kind) for f in report.mirror_bad]),
        ("core metadata with a bad or missing blob (the server derives it again from the wheel)",
         [(f"{f.what}", f.kind) for f in report.metadata_bad]),
    ]
    for title, items in groups:
        if items:
            out.append(f"{title}: {len(items)}")
            out.extend(f"  {what}{' (' + kind + ')' if kind else ''}" for what, kind in items[:SHOWN])
            if len(items) > SHOWN:
                out.append(f"  ... and {len(items) - SHOWN} more")
    if repaired:
        out.append(f"repaired: {len(report.quarantined)} blobs quarantined, {report.refetch} mirror files "
                   "to download again")
    elif report.corrupt or report.mirror_bad:
        out.append("run again with --repair to quarantine bad blobs and download bad mirror files again")
    out.append(f"problems: {report.problems}" if report.problems else "no problems")
    return out


