"""``devpi getjson`` / ``devpi patchjson``: raw access to the JSON API (debugging, scripting)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from devpi.client.cli import add_command
from devpi.client.hub import Hub, is_url


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "getjson", run_get, help="GET a JSON resource of the server and print it",
                    description="GET a JSON resource and print it.\n\n"
                                "  devpi getjson /alice/dev          absolute path: from the server root\n"
                                "  devpi getjson tinypkg             relative path: from the current index\n"
                                "  devpi getjson http://host/+api    a full URL")
    p.add_argument("path", metavar="PATH_OR_URL", help="URL, /absolute/path or path relative to the index")
    p2 = add_command(subparsers, "patchjson", run_patch, help="PATCH a JSON resource with a JSON file",
                     description="PATCH a resource with the JSON in FILE and print the reply.\n\n"
                                 "  devpi patchjson /alice/dev changes.json")
    p2.add_argument("path", metavar="PATH_OR_URL", help="URL, /absolute/path or path relative to the index")
    p2.add_argument("file", metavar="FILE", help="file with the JSON body")


def resolve(hub: Hub, path: str) -> str:
    if is_url(path):
        return path
    if path.startswith("/"):
        return hub.root + path
    return f"{hub.index_url()}/{path}"


def _print_reply(hub: Hub, reply: Any) -> None:
    if hub.verbose:
        hub.info(f"{reply.status_code} {reply.reason}")
        for key, value in reply.headers.items():
            hub.info(f"{key}: {value}")
        hub.info()
    if reply.json is not None:
        hub.info(json.dumps(reply.json, indent=2, sort_keys=True))
    elif reply.response.text:
        hub.info(reply.response.text.rstrip("\n"))
    if reply.status_code >= 400:
        hub.fatal(reply.error_text())


def run_get(hub: Hub, args: argparse.Namespace) -> int:
    reply = hub.request("GET", resolve(hub, args.path), check=False)
    _print_reply(hub, reply)
    return 0


def run_patch(hub: Hub, args: argparse.Namespace) -> int:
    try:
        body = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except OSError as e:
        hub.fatal(f"cannot read {args.file}: {e.strerror}")
    except ValueError as e:
        hub.fatal(f"{args.file} is not valid JSON: {e}")
    reply = hub.request("PATCH", resolve(hub, args.path), body, check=False)
    _print_reply(hub, reply)
    return 0
