"""``devpi user`` and ``devpi passwd``: create, show, modify, list, delete users.

Modification is read-modify-write of the whole user config, exactly as the
original client does, so it works with servers that only accept full dicts.
"""
from __future__ import annotations

import argparse
from typing import Any

from devpi.client.cli import add_command
from devpi.client.hub import Hub
from devpi.client.login import read_password

DESCRIPTION = """\
Manage users.

  devpi user -c alice password=s3cret email=alice@example.com
  devpi user -m alice email=alice@example.org title=Alice
  devpi user -l
  devpi user alice                 show a user's settings
  devpi user --delete alice -y
"""


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "user", run, help="create, modify, show, list or delete users",
                    description=DESCRIPTION)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-c", "--create", action="store_true", help="create a user")
    g.add_argument("-m", "--modify", action="store_true", help="modify a user's settings")
    g.add_argument("-l", "--list", action="store_true", help="list user names")
    g.add_argument("--delete", action="store_true", help="delete a user (asks unless -y)")
    p.add_argument("username", nargs="?", help="user name (default: the logged-in user)")
    p.add_argument("keyvalues", nargs="*", metavar="key=value",
                   help="settings: password, email, title, description, custom_data")
    p2 = add_command(subparsers, "passwd", run_passwd, help="change a user's password",
                     description="Change a password (prompted for twice).\n\n  devpi passwd\n  devpi passwd alice")
    p2.add_argument("username", nargs="?", help="user name (default: the logged-in user)")
    p2.add_argument("--password", default=None, help="new password (prompted for when omitted)")


def parse_keyvalues(hub: Hub, items: list[str]) -> dict[str, str]:
    """``key=value`` arguments as a dict; a blank key is refused here rather than sent to the server."""
    kv: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            hub.fatal(f"expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        if not key.strip():
            hub.fatal(f"empty key in {item!r}: expected key=value")
        kv[key.strip()] = value
    return kv


def ask_new_password(hub: Hub, username: str) -> str:
    import sys

    first = read_password(f"new password for user {username}: ")
    if sys.stdin and sys.stdin.isatty():
        second = read_password("repeat password: ")
        if first != second:
            hub.fatal("passwords do not match")
    if not first:
        hub.fatal("empty password")
    return first


def run(hub: Hub, args: argparse.Namespace) -> int:
    root = hub.root
    if args.username:
        hub.check_name(args.username, "user name")
    if args.list:
        reply = hub.request("GET", root + "/", expect_type="list:userconfig")
        for name in sorted(reply.result or {}):
            hub.info(name)
        return 0
    if args.create:
        if not args.username:
            hub.fatal("need a user name: devpi user -c NAME password=...")
        kv = parse_keyvalues(hub, args.keyvalues)
        if "password" not in kv and "pwhash" not in kv:
            kv["password"] = ask_new_password(hub, args.username)
        reply = hub.request("PUT", f"{root}/{args.username}", kv, expect_type="userconfig",
                            error_prefix=f"cannot create user {args.username}")
        hub.info(f"user created: {args.username}")
        _print_config(hub, args.username, reply.result or {})
        return 0
    username = args.username or hub.user
    if not username:
        hub.fatal("no user name given and not logged in")
    if args.delete:
        if args.keyvalues:
            hub.fatal("--delete takes no key=value arguments")
        if not hub.confirm(f"delete user {username} with all its indexes and packages?"):
            hub.fatal("not deleted", exitcode=1)
        hub.request("DELETE", f"{root}/{username}", error_prefix=f"cannot delete user {username}")
        hub.info(f"user deleted: {username}")
        if hub.user == username:
            hub.state.del_login(root)
        return 0
    if args.modify:
        kv = parse_keyvalues(hub, args.keyvalues)
        if not kv:
            hub.fatal("nothing to modify: give key=value arguments")
        reply = modify_user(hub, username, kv)
        hub.info(f"user modified: {username}")
        if "password" in kv:
            keep_login(hub, username, reply)
        return 0
    if args.keyvalues:
        hub.fatal("key=value arguments need -c (create) or -m (modify)")
    reply = hub.request("GET", f"{root}/{username}", expect_type="userconfig",
                        error_prefix=f"user {username}")
    _print_config(hub, username, reply.result or {})
    return 0


def modify_user(hub: Hub, username: str, kv: dict[str, str]) -> Any:
    """GET the user config, override keys, PATCH the whole dict (devpi's read-modify-write)."""
    url = f"{hub.root}/{username}"
    reply = hub.request("GET", url, expect_type="userconfig", error_prefix=f"user {username}")
    config = dict(reply.result or {})
    for key in ("indexes", "username"):
        config.pop(key, None)
    config.update(kv)
    return hub.request("PATCH", url, config, error_prefix=f"cannot modify user {username}")


def _print_config(hub: Hub, username: str, config: dict[str, Any]) -> None:
    hub.info(f"{username}:")
    for key in sorted(config):
        if key in ("indexes", "username"):
            continue
        hub.info(f"  {key}={config[key]}")


def keep_login(hub: Hub, username: str, reply: Any) -> None:
    """After a password change of the logged-in user, store the token the server sent.

    Changing the password invalidates the old token, so keeping it would make
    the next command fail with a bare 401; without a new token the login is
    dropped and the user told so.
    """
    if hub.user != username:
        return
    result = reply.result if isinstance(reply.result, dict) else {}
    if reply.type == "userpassword" and result.get("password"):
        hub.state.set_login(hub.root, username, result["password"])
    else:
        hub.state.del_login(hub.root)
        hub.warn(f"the password of {username} changed and the server sent no new login: "
                 f"logged off, run 'devpi login {username}' again")


def run_passwd(hub: Hub, args: argparse.Namespace) -> int:
    username = args.username or hub.user
    if not username:
        hub.fatal("not logged in: run 'devpi login USER' first (or name the user)")
    hub.check_name(username, "user name")
    password = args.password if args.password is not None else ask_new_password(hub, username)
    if not password:
        hub.fatal("empty password")
    reply = modify_user(hub, username, {"password": password})
    keep_login(hub, username, reply)
    hub.info(f"password changed for user {username}")
    return 0
