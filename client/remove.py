"""``devpi remove``: delete projects, versions or single files from an index.

Only what lives on the index itself is touched (never inherited
releases); the list of what will go is shown before asking.
"""
from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urljoin

from devpi.client.cli import add_command, add_index_option
from devpi.client.hub import Hub, is_url
from devpi.client.spec import normalize, own_versions, parse_spec

DESCRIPTION = """\
Remove a project, some versions or a file from the current index.

  devpi remove tinypkg==1.0          one version with its files (asks first)
  devpi remove 'tinypkg<2' -y        every matching version, without asking
  devpi remove tinypkg               the whole project
  devpi remove --force tinypkg==1.0  also on a non-volatile index
  devpi remove http://host/alice/dev/+f/3a4/5b6c7d8e9f0a1/tinypkg-1.0.tar.gz
"""


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "remove", run, help="remove projects, versions or files from an index",
                    description=DESCRIPTION)
    p.add_argument("specs", nargs="+", metavar="NAME[==VERSION]|URL", help="what to remove")
    add_index_option(p)
    p.add_argument("-f", "--force", action="store_true", help="remove even from a non-volatile index")


def run(hub: Hub, args: argparse.Namespace) -> int:
    params = {"force": ""} if args.force else None
    for text in args.specs:
        if is_url(text):
            if not hub.confirm(f"remove {text}?"):
                hub.fatal("nothing removed")
            _delete(hub, text, params, args.force)
            hub.info(f"removed {text}")
            continue
        remove_spec(hub, text, args, params)
    return 0


def _delete(hub: Hub, url: str, params: dict[str, str] | None, force: bool) -> None:
    reply = hub.request("DELETE", url, params=params, check=False)
    if reply.status_code not in (200, 201):
        text = reply.error_text()
        hint = " (use --force to remove from a non-volatile index)" if (
            reply.status_code == 403 and "volatile" in text and not force) else ""
        if reply.status_code in (401, 403) and not hub.login:
            hint = " (not logged in: run 'devpi login USER')"
        hub.fatal(f"cannot remove {url}: {text}{hint}")


def remove_spec(hub: Hub, text: str, args: argparse.Namespace, params: dict[str, str] | None) -> None:
    index = hub.index_url(args.index)
    iname = hub.index_name(index)
    spec = parse_spec(hub, text)
    url = f"{index}/{normalize(spec.name)}"
    base, data, versions = own_versions(hub, index, spec, text)
    hub.info(f"about to remove from index {iname}:")
    for version in versions:
        hub.info(f"  {spec.name} {version}")
        for link in (data[version] or {}).get("+links") or []:
            href = urljoin(base, link.get("href") or "")
            if href.startswith(index + "/"):
                hub.info(f"    {href}")
    if not hub.confirm(f"remove {len(versions)} version(s) of {spec.name} from {iname}?"):
        hub.fatal("nothing removed")
    if not spec.has_version:
        _delete(hub, url, params, args.force)
        hub.info(f"removed project {spec.name} from {iname}")
        return
    for version in versions:
        _delete(hub, f"{url}/{version}", params, args.force)
        hub.info(f"removed {spec.name} {version} from {iname}")
