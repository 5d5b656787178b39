"""``devpi login`` / ``devpi logoff`` (alias ``logout``).

The server hands out an opaque token at ``POST /+login``; we keep it in the
0600 auth file and send it as ``X-Devpi-Auth`` on every request.  Logging off
is purely local, as in devpi (there is no server-side revocation).
"""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from devpi.client.cli import add_command
from devpi.client.hub import Hub


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers, "login", run_login,
        help="log in to the current server (prompts for the password)",
        description="Log in to the current server; the token is stored (mode 0600) in the client dir.\n\n"
                    "  devpi login alice\n  devpi login alice --password s3cret\n"
                    "  devpi login --token TOKEN      a scoped API token (see 'devpi token')\n"
                    "  devpi login --token - < FILE   the token from stdin (not in the shell history)",
    )
    p.add_argument("username", nargs="?", help="user name (not needed with --token)")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="log in with a scoped API token instead of a password ('-': read it from stdin); "
                        "the token's limits hold for every command")
    p.add_argument("--password", default=None,
                   help="password (when omitted: from a client plugin such as keyring's, else prompted for; "
                        "read from stdin when it is not a terminal)")
    for name in ("logoff", "logout"):
        add_command(subparsers, name, run_logoff,
                    help="forget the login token for the current server",
                    description="Forget the login token for the current server (no request is sent).\n\n"
                                f"  devpi {name}")


def read_password(prompt: str) -> str:
    """Prompt on a terminal; read one line from a pipe (scripts: ``echo pw | devpi login u``)."""
    if sys.stdin and sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline() if sys.stdin else ""
    return line.rstrip("\r\n")


def run_login(hub: Hub, args: argparse.Namespace) -> int:
    root = hub.root
    login_url = hub.state.get("login") or root + "/+login"
    if args.token is not None:
        return login_with_token(hub, root, login_url, args)
    if not args.username:
        hub.fatal("need a user name: devpi login USER (or devpi login --token TOKEN)")
    password = args.password
    if password is None:
        from devpi.client.plugins import get_plugins

        # the original devpi-client asks with the root URL ending in "/": keyring entries made
        # for it (`keyring set https://host/ USER`) are found the same way
        found = get_plugins().get_password(root + "/", args.username)
        if found is not None:
            password, plugin = found
            hub.info(f"using the password of {args.username} from client plugin {plugin!r}")
    if password is None:
        password = read_password(f"password for user {args.username} at {root}: ")
    reply = hub.request("POST", login_url, {"user": args.username, "password": password},
                        auth=False, check=False)
    if reply.status_code != 200:
        hub.fatal(f"login failed: {reply.error_text()}")
    result = reply.result if isinstance(reply.result, dict) else {}
    token = result.get("password")
    if not token:
        hub.fatal(f"login failed: the server sent no token (reply type {reply.type!r})")
    hub.state.set_login(root, args.username, token)
    hub.state.update(username=args.username)
    expiration = result.get("expiration")
    where = hub.state.index or root
    valid = f", credentials valid for {float(expiration) / 3600:.2f} hours" if expiration else ""
    hub.info(f"logged in '{args.username}' at '{where}'{valid}")
    if hub.state.index:
        check = hub.request("GET", hub.state.index, params={"no_projects": ""}, check=False)
        if check.status_code == 404:
            hub.warn(f"the index in use ({hub.state.index}) does not exist (anymore)")
        elif check.status_code in (401, 403):
            hub.warn(f"user {args.username} cannot read the index in use ({hub.state.index})")
    return 0


def login_with_token(hub: Hub, root: str, login_url: str, args: argparse.Namespace) -> int:
    """The server answers a token login with the same token and its owner: we store that pair,
    so the token (never a broader login token) goes with every later request."""
    token = read_password("API token: ") if args.token == "-" else args.token
    token = token.strip()
    if not token:
        hub.fatal("empty token")
    reply = hub.request("POST", login_url, {"user": args.username or "__token__", "password": token},
                        auth=False, check=False)
    if reply.status_code != 200:
        hub.fatal(f"login failed: {reply.error_text()}")
    result = reply.result if isinstance(reply.result, dict) else {}
    user = result.get("user")
    if not user or result.get("password") != token:
        hub.fatal("login failed: the server does not support scoped API tokens (or this is no such token)")
    hub.state.set_login(root, str(user), token)
    hub.state.update(username=str(user))
    scope = result.get("token") if isinstance(result.get("token"), dict) else {}
    where = ", ".join(scope.get("indexes") or []) or "any index"
    hub.info(f"logged in '{user}' at '{hub.state.index or root}' with token {scope.get('id')}: "
             f"{', '.join(scope.get('allowed') or [])} on {where}")
    return 0


def run_logoff(hub: Hub, args: argparse.Namespace) -> int:
    root = hub.state.root_url
    if not root or not hub.state.get_login(root):
        hub.info("not logged in")
        return 0
    user = hub.state.get_login(root)[0]  # type: ignore[index]
    hub.state.del_login(root)
    hub.state.update(username=None)
    hub.info(f"login information for '{user}' at {root} deleted")
    return 0
