"""``devpi token create|list|revoke``: scoped API tokens for CI jobs and tools.

A token does a few named things (upload, toxresult, push, delete, index-admin,
read), optionally on named indexes only, until it expires; the server stores
only its hash, so ``create`` prints it once. Use it as a password: twine's
``-u __token__ -p TOKEN``, pip's ``http://__token__:TOKEN@127.0.0.1:3141/...``, or
``devpi login --token TOKEN``. Managing tokens needs the password or a
``devpi login`` with it: a token cannot make or list tokens.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from devpi.client.cli import add_command
from devpi.client.hub import Hub

ACTIONS = ("read", "upload", "toxresult", "push", "delete", "index-admin", "replicate")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DEFAULT_EXPIRES = "30d"

DESCRIPTION = f"""\
Create, list and revoke scoped API tokens (of the logged-in user, or --user).

  devpi token create --index alice/dev --allow upload --expires 30d   prints the token once
  devpi token create --allow upload,toxresult --description "CI of project X"
  devpi token list
  devpi token revoke ID

Actions: {', '.join(ACTIONS)}. Without --index the token acts on every index its
user may act on. --expires: a number with s, m, h, d or w (default {DEFAULT_EXPIRES}, at most a year).
"""


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "token", run, help="create, list and revoke scoped API tokens",
                    description=DESCRIPTION)
    p.add_argument("action", choices=("create", "list", "revoke"), help="what to do")
    p.add_argument("token_id", nargs="?", metavar="ID", help="the token to revoke (see 'devpi token list')")
    p.add_argument("--user", default=None, help="whose tokens (default: the logged-in user; root: anyone's)")
    p.add_argument("--allow", action="append", default=[], metavar="ACTIONS",
                   help=f"what the token may do, comma-separated or repeated: {', '.join(ACTIONS)}")
    p.add_argument("--index", action="append", default=[], metavar="USER/INDEX",
                   help="limit the token to this index (repeatable); default: any index")
    p.add_argument("--expires", default=DEFAULT_EXPIRES, metavar="DURATION",
                   help=f"lifetime, e.g. 12h, 30d, 52w (default {DEFAULT_EXPIRES})")
    p.add_argument("--description", default=None, help="a note to tell tokens apart (at most 200 characters)")


def parse_duration(text: str) -> int | None:
    """Seconds of ``30d``, ``12h``, ``90m``...; None when it is no duration."""
    m = re.fullmatch(r"\s*(\d{1,7})\s*([smhdw]?)\s*", text)
    if not m:
        return None
    return int(m.group(1)) * UNITS[m.group(2) or "s"]


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def run(hub: Hub, args: argparse.Namespace) -> int:
    root = hub.root
    user = args.user or hub.require_login()
    hub.check_name(user, "user name")
    if args.action == "create":
        return create(hub, root, user, args)
    if args.action == "list":
        return listing(hub, root, user)
    if not args.token_id:
        hub.fatal("which token? devpi token revoke ID (see 'devpi token list')")
    reply = hub.request("DELETE", f"{root}/{user}/+tokens/{args.token_id}", error_prefix="cannot revoke token")
    hub.info(reply.message or f"token {args.token_id} revoked")
    return 0


def create(hub: Hub, root: str, user: str, args: argparse.Namespace) -> int:
    actions = [a.strip() for item in args.allow for a in item.split(",") if a.strip()]
    if not actions:
        hub.fatal(f"say what the token may do: --allow ACTIONS ({', '.join(ACTIONS)})")
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        hub.fatal(f"unknown action {unknown[0]!r}: use {', '.join(ACTIONS)}")
    seconds = parse_duration(args.expires)
    if not seconds:
        hub.fatal(f"--expires {args.expires!r} is no duration: use e.g. 12h, 30d or 52w")
    body: dict[str, Any] = {"allowed": actions, "expires": int(time.time()) + seconds}
    if args.index:
        body["indexes"] = [i.strip("/") for item in args.index for i in item.split(",") if i.strip()]
    if args.description is not None:
        body["description"] = args.description
    reply = hub.request("POST", f"{root}/{user}/+token-create", body, expect_type="token-info",
                        error_prefix="cannot create token")
    result = reply.result if isinstance(reply.result, dict) else {}
    token = result.get("token")
    if not token:
        hub.fatal("the server sent no token")
    hub.info(str(token))  # alone on stdout: TOKEN=$(devpi token create ...)
    where = ", ".join(result.get("indexes") or []) or "any index"
    print(f"token {result.get('id')} of {user}: {', '.join(actions)} on {where}, "
             f"expires {_when(result.get('expires'))}; it is shown only now",
          file=sys.stderr)
    return 0


def listing(hub: Hub, root: str, user: str) -> int:
    reply = hub.request("GET", f"{root}/{user}/+tokens", expect_type="tokens-info",
                        error_prefix="cannot list tokens")
    tokens = (reply.result or {}).get("tokens") or {} if isinstance(reply.result, dict) else {}
    if not tokens:
        hub.info(f"user {user} has no tokens")
        return 0
    for token_id, t in sorted(tokens.items(), key=lambda kv: kv[1].get("created") or 0):
        where = ",".join(t.get("indexes") or []) or "any index"
        state = "EXPIRED" if t.get("expired") else f"expires {_when(t.get('expires'))}"
        note = f"  {t['description']}" if t.get("description") else ""
        hub.info(f"{token_id}  {','.join(t.get('allowed') or [])} on {where}  {state}  "
                 f"last used {_when(t.get('last_used'))}{note}")
    return 0
