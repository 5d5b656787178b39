"""``devpi refresh NAME...``: make mirror indexes fetch a project's links again now.

Unlike devpi-client (which always exits 0) a failed refresh exits 1, so
scripts can rely on the exit code.
"""
from __future__ import annotations

import argparse
from typing import Any

from devpi.client.cli import add_command, add_index_option
from devpi.client.errors import DevpiError
from devpi.client.hub import Hub
from devpi.client.spec import normalize


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "refresh", run, help="refresh the mirror cache of projects",
                    description="Drop the cached upstream links of projects on every mirror the index "
                                "inherits from.\n\n  devpi refresh requests\n  devpi refresh six attrs --index root/pypi")
    p.add_argument("names", nargs="+", metavar="NAME", help="project name(s)")
    add_index_option(p)


def run(hub: Hub, args: argparse.Namespace) -> int:
    index = hub.index_url(args.index)
    failures = []
    for name in args.names:
        url = f"{index}/+simple/{normalize(name)}/refresh"
        try:
            reply = hub.request("POST", url, check=False, headers={"Accept": "text/html"})
        except DevpiError as e:
            failures.append(f"{name}: {e.message}")
            continue
        if reply.status_code == 200:
            hub.info(f"refreshed {name} on {hub.index_name(index)}")
        else:
            failures.append(f"{name}: {reply.error_text()}")
    if failures:
        hub.fatal("could not refresh " + "; ".join(failures))
    return 0
