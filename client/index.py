"""``devpi index``: create, show, modify, list and delete indexes.

Modification sends devpi's list of ``"k=v"``/``"k+=v"``/``"k-=v"`` strings
when the server announces ``server-keyvalue-parsing``, and otherwise merges
the change into the current config locally and sends the whole dict.
"""
from __future__ import annotations

import argparse
from typing import Any

from devpi.client.cli import add_command
from devpi.client.hub import Hub

DESCRIPTION = """\
Create, show, modify, list or delete indexes.

  devpi index -c dev bases=root/pypi           create alice/dev (when logged in as alice)
  devpi index -c alice/prod volatile=False
  devpi index                                  show the current index
  devpi index alice/dev bases=alice/prod       set a key
  devpi index dev mirror_whitelist+=requests   add to a list key
  devpi index dev acl_upload-=bob              remove from a list key
  devpi index -l [USER]                        list indexes
  devpi index --delete alice/dev -y
"""

LIST_KEYS = ("bases", "acl_upload", "acl_toxresult_upload", "mirror_whitelist")


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "index", run, help="create, show, modify, list or delete indexes",
                    description=DESCRIPTION)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-c", "--create", action="store_true", help="create an index")
    g.add_argument("-l", "--list", action="store_true", help="list the indexes of a user (default: you)")
    g.add_argument("--delete", action="store_true", help="delete an index (asks unless -y)")
    p.add_argument("--no-projects", action="store_true", help="when showing, leave out the project list")
    p.add_argument("indexname", nargs="?", help="INDEX, USER/INDEX or URL (default: the current index)")
    p.add_argument("keyvalues", nargs="*", metavar="key=value",
                   help="settings: bases, volatile, acl_upload, acl_toxresult_upload, mirror_whitelist, "
                        "mirror_url, title, description, ... (key+=value / key-=value for lists)")


def run(hub: Hub, args: argparse.Namespace) -> int:
    name = args.indexname
    keyvalues = list(args.keyvalues)
    if name and "=" in name:
        keyvalues.insert(0, name)
        name = None
    for kv in keyvalues:
        if "=" not in kv:
            hub.fatal(f"expected key=value, got {kv!r}")
        if not kv.split("=", 1)[0].rstrip("+-").strip():
            # the server would store (or choke on) a blank key: refuse it here
            hub.fatal(f"empty key in {kv!r}: expected key=value")
    if args.list:
        return list_indexes(hub, name)
    if args.create:
        if not name:
            hub.fatal("need an index name: devpi index -c NAME [key=value ...]")
        hub.require_login()
        url = hub.index_url(name)
        body: dict[str, str] = {}
        for kv in keyvalues:
            key, value = kv.split("=", 1)
            if key.endswith(("+", "-")):
                hub.fatal(f"{kv!r}: += and -= only work when modifying an index")
            body[key] = value
        reply = hub.request("PUT", url, body, expect_type="indexconfig",
                            error_prefix=f"cannot create index {hub.index_name(url)}")
        hub.info(f"index created: {hub.index_name(url)}")
        show_config(hub, url, reply.result or {})
        return 0
    if args.delete or keyvalues:
        hub.require_login()
    url = hub.index_url(name)
    if args.delete:
        if keyvalues:
            hub.fatal("--delete takes no key=value arguments")
        iname = hub.index_name(url)
        if not hub.confirm(f"delete index {iname} with all its packages?"):
            hub.fatal("not deleted")
        hub.request("DELETE", url, error_prefix=f"cannot delete index {iname}")
        hub.info(f"index deleted: {iname}")
        if hub.state.index and hub.state.index.rstrip("/") == url:
            hub.warn("that was the index in use: pick another with 'devpi use USER/INDEX'")
        return 0
    if keyvalues:
        reply = modify_index(hub, url, keyvalues)
        hub.info(f"index modified: {hub.index_name(url)}")
        show_config(hub, url, reply.result or {})
        return 0
    params = {"no_projects": ""} if args.no_projects else None
    reply = hub.request("GET", url, params=params, expect_type="indexconfig",
                        error_prefix=f"index {hub.index_name(url)}")
    show_config(hub, url, reply.result or {})
    return 0


def modify_index(hub: Hub, url: str, keyvalues: list[str]) -> Any:
    """PATCH the index the way this server understands (list of k=v, else merged dict)."""
    iname = hub.index_name(url)
    current = hub.request("GET", url, params={"no_projects": ""}, expect_type="indexconfig",
                          error_prefix=f"index {iname}")
    features = hub.state.features
    if "server-keyvalue-parsing" in features:
        body: Any = keyvalues
    else:
        body = merge_keyvalues(hub, dict(current.result or {}), keyvalues)
    reply = hub.request("PATCH", url, body, error_prefix=f"cannot modify index {iname}")
    if reply.type != "indexconfig" or not isinstance(reply.result, dict):
        reply = hub.request("GET", url, params={"no_projects": ""}, expect_type="indexconfig")
    return reply


def merge_keyvalues(hub: Hub, config: dict[str, Any], keyvalues: list[str]) -> dict[str, Any]:
    """Apply k=v / k+=v / k-=v locally (for servers without server-keyvalue-parsing)."""
    config.pop("projects", None)
    for kv in keyvalues:
        key, value = kv.split("=", 1)
        if key.endswith("+"):
            key = key[:-1]
            items = list(config.get(key) or [])
            for v in _split(value):
                if v not in items:
                    items.append(v)
            config[key] = items
        elif key.endswith("-"):
            key = key[:-1]
            if not value:
                config.pop(key, None)
                continue
            items = list(config.get(key) or [])
            for v in _split(value):
                if v not in items:
                    hub.fatal(f"The '{key}' setting doesn't have value '{v}'")
                items.remove(v)
            config[key] = items
        elif key in LIST_KEYS:
            config[key] = _split(value)
        else:
            config[key] = value
    return config


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def show_config(hub: Hub, url: str, config: dict[str, Any]) -> None:
    hub.info(f"{url}:")
    for key in sorted(config):
        value = config[key]
        if key == "projects":
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        hub.info(f"  {key}={value}")
    if "projects" in config:
        projects = config["projects"] or []
        hub.info(f"  projects={','.join(sorted(projects))}")


def list_indexes(hub: Hub, user: str | None) -> int:
    """Indexes of one user (``GET /USER``), or of everyone when not logged in."""
    root = hub.root
    user = user or hub.user
    if user:
        hub.check_name(user.strip("/"), "user name")
        reply = hub.request("GET", f"{root}/{user.strip('/')}", expect_type="userconfig",
                            error_prefix=f"user {user}")
        for name in sorted((reply.result or {}).get("indexes") or {}):
            hub.info(f"{user}/{name}")
        return 0
    reply = hub.request("GET", root + "/", expect_type="list:userconfig")
    for username, config in sorted((reply.result or {}).items()):
        for name in sorted((config or {}).get("indexes") or {}):
            hub.info(f"{username}/{name}")
    return 0
