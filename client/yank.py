"""``devpi yank`` / ``devpi unyank``: mark versions yanked (PEP 592) on an index, or undo it.

A yanked version stays installable when pinned exactly (``==``) but installers skip it
otherwise; that is the point of yanking instead of removing. The server keeps the reason
and shows it on the simple pages (``data-yanked``) and in ``devpi list``.
"""
from __future__ import annotations

import argparse
from typing import Any

from devpi.client.cli import add_command, add_index_option
from devpi.client.hub import Hub
from devpi.client.spec import normalize, own_versions, parse_spec

DESCRIPTION = """\
Yank versions (PEP 592): installers skip them unless pinned with ==.

  devpi yank tinypkg==1.0                     one version
  devpi yank tinypkg==1.0 --reason "broken on Windows"
  devpi yank 'tinypkg<2' -y                   every matching version, without asking
  devpi unyank tinypkg==1.0
"""
MAX_REASON = 1000  # characters: a reason is a sentence, not a document


def register(subparsers: Any) -> None:
    for name, undo in (("yank", False), ("unyank", True)):
        p = add_command(subparsers, name, run_unyank if undo else run_yank,
                        help="undo a yank" if undo else "yank versions (PEP 592): installers skip them",
                        description=DESCRIPTION)
        p.add_argument("spec", metavar="NAME==VERSION|NAME SPEC", help="the version(s) to "
                       + ("unyank" if undo else "yank"))
        add_index_option(p)
        if not undo:
            p.add_argument("--reason", default=None, help="why (shown to users of pip and on the web page)")


def run_yank(hub: Hub, args: argparse.Namespace) -> int:
    return _run(hub, args, undo=False)


def run_unyank(hub: Hub, args: argparse.Namespace) -> int:
    return _run(hub, args, undo=True)


def _run(hub: Hub, args: argparse.Namespace, undo: bool) -> int:
    verb = "unyank" if undo else "yank"
    reason = getattr(args, "reason", None)
    if reason is not None and (len(reason) > MAX_REASON or not reason.isprintable()):
        hub.fatal(f"--reason must be one line of at most {MAX_REASON} printable characters")
    index = hub.index_url(args.index)
    iname = hub.index_name(index)
    spec = parse_spec(hub, args.spec)
    if not spec.has_version:
        hub.fatal(f"say which version to {verb}: {spec.name}==VERSION (or a range such as '{spec.name}<2')")
    url = f"{index}/{normalize(spec.name)}"
    _, _, versions = own_versions(hub, index, spec, args.spec)
    if len(versions) > 1:
        hub.info(f"about to {verb} on index {iname}: " + ", ".join(f"{spec.name} {v}" for v in versions))
        if not hub.confirm(f"{verb} {len(versions)} versions of {spec.name}?"):
            hub.fatal(f"nothing {verb}ed")
    body = {"reason": reason} if reason is not None else None
    for version in versions:
        kw = {"body": body} if body is not None else {}
        reply = hub.request("POST", f"{url}/{version}/+{verb}", check=False, **kw)
        if reply.status_code not in (200, 201):
            hint = " (not logged in: run 'devpi login USER')" if reply.status_code == 401 and not hub.login else ""
            hub.fatal(f"cannot {verb} {spec.name} {version} on {iname}: {reply.error_text()}{hint}")
        hub.info(reply.message or f"{spec.name} {version} {verb}ed on {iname}")
    return 0
