"""``devpi push NAME==VERSION TARGET``: promote a release.

``TARGET`` is ``USER/INDEX`` on the same server (a server-side copy: no
bytes travel) or ``pypi:REPO``, a repository section of ``~/.pypirc``, in
which case the *server* uploads the stored files there with the
repository's credentials -- the files that were tested are the files that
get published.
"""
from __future__ import annotations

import argparse
import configparser
import html
import re
import sys
from pathlib import Path
from typing import Any

from devpi.client.cli import add_command, add_index_option
from devpi.client.hub import Hub
from devpi.client.login import read_password

DESCRIPTION = """\
Push a release (files, docs, test results) to another index or an external repository.

  devpi push tinypkg==1.0 alice/prod          copy within the server
  devpi push tinypkg==1.0 pypi:testpypi       upload to [testpypi] of ~/.pypirc
  devpi push tinypkg==1.0 pypi:corp --pypirc ./pypirc
  devpi push tinypkg==1.0 alice/prod --no-docs
"""

def default_repository() -> str | None:
    """The upload URL twine uses when a .pypirc section names none: asked of twine,
    never written into our code."""
    try:
        from twine.utils import DEFAULT_REPOSITORY
    except ImportError:
        return None
    return str(DEFAULT_REPOSITORY)


_HIDDEN_HTML = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[!/?A-Za-z][^<>]*>")
ACTION_LINE_MAX = 200


def action_line(entry: Any, limit: int = ACTION_LINE_MAX) -> str:
    """One action-log entry as one readable line.

    An external repository that fails often answers with a whole HTML error
    page, which the server passes on verbatim; printed as is it buries the
    actual reason under dozens of lines of markup.
    """
    text = " ".join(str(x) for x in entry) if isinstance(entry, list) else str(entry)
    if "<" in text:
        text = html.unescape(_HTML_TAG.sub(" ", _HIDDEN_HTML.sub(" ", text)))
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit - 3].rstrip() + "..."
    return text


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "push", run, help="push a release to another index or to an external repository",
                    description=DESCRIPTION)
    p.add_argument("pkgspec", metavar="NAME==VERSION", help="the release to push")
    p.add_argument("target", metavar="TARGET", help="USER/INDEX on this server, or pypi:REPO (a .pypirc section)")
    add_index_option(p)
    p.add_argument("--pypirc", metavar="PATH", default=None, help="pypirc file to read pypi:REPO from (default ~/.pypirc)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-docs", action="store_true", help="do not push the documentation")
    g.add_argument("--only-docs", action="store_true", help="push only the documentation")
    p.add_argument("--register-project", action="store_true",
                   help="register the project at the external repository before uploading")


def parse_name_version(hub: Hub, spec: str) -> tuple[str, str]:
    if "==" in spec:
        name, version = (s.strip() for s in spec.split("==", 1))
    elif "-" in spec:
        name, version = spec.rsplit("-", 1)
        hub.warn(f"the NAME-VERSION form is deprecated, use {name}=={version}")
    else:
        hub.fatal(f"need NAME==VERSION, got {spec!r}")
    if not name or not version:
        hub.fatal(f"need NAME==VERSION, got {spec!r}")
    return name, version


def read_pypirc(hub: Hub, repo: str, path_arg: str | None) -> dict[str, str]:
    path = Path(path_arg).expanduser() if path_arg else Path.home() / ".pypirc"
    if not path.exists():
        hub.fatal(f"pypirc file {path} does not exist (needed for pypi:{repo})")
    cp = configparser.RawConfigParser()
    try:
        cp.read(path, encoding="utf-8")
    except configparser.Error as e:
        hub.fatal(f"cannot parse {path}: {' '.join(str(e).split())}")
    if not cp.has_section(repo):
        hub.fatal(f"no section [{repo}] in {path}")
    section = dict(cp.items(repo))
    posturl = section.get("repository") or default_repository()
    if not posturl:
        hub.fatal(f"section [{repo}] in {path} has no 'repository' URL (and twine, whose default "
                  "would apply, is not installed)")
    username = section.get("username")
    password = section.get("password")
    if not username:
        if not (sys.stdin and sys.stdin.isatty()):
            hub.fatal(f"no username in [{repo}] of {path}")
        username = input(f"username for {posturl}: ")
    if not password:
        password = read_password(f"password for {username} at {posturl}: ")
    return {"posturl": posturl, "username": username, "password": password}


def run(hub: Hub, args: argparse.Namespace) -> int:
    name, version = parse_name_version(hub, args.pkgspec)
    info = hub.index_api(args.index)
    index = info["index"]
    features = info.get("features") or []
    body: dict[str, Any] = {"name": name, "version": version}
    target = args.target
    if target.startswith("pypi:"):
        repo = target[len("pypi:"):]
        if not repo:
            hub.fatal("need a repository name after 'pypi:'")
        body.update(read_pypirc(hub, repo, args.pypirc))
        if args.register_project:
            body["register_project"] = True
        where = f"{repo} ({body['posturl']})"
    else:
        target = hub.qualify_index(target)
        body["targetindex"] = target
        where = target
    for flag, feature in (("no_docs", "push-no-docs"), ("only_docs", "push-only-docs")):
        if getattr(args, flag):
            if feature not in features:
                hub.fatal(f"the server does not support --{flag.replace('_', '-')}")
            body[flag] = True
    reply = hub.request("PUSH", index, body, check=False)
    if reply.status_code in (405, 501):
        # some proxies refuse unknown methods; devpi accepts POST with the same body
        reply = hub.request("POST", index, body, check=False)
    actionlog = reply.result if reply.type == "actionlog" and isinstance(reply.result, list) else []
    failed = []
    for entry in actionlog:
        line = action_line(entry)
        hub.info(line)
        if isinstance(entry, list) and entry and entry[0] not in (200, 201, 410):
            failed.append(line)
    if reply.status_code not in (200, 201):
        hint = ""
        if reply.status_code in (401, 403) and not hub.login:
            hint = " (not logged in: run 'devpi login USER')"
        reason = f" (last failed action: {failed[-1]})" if failed else ""
        hub.fatal(f"push of {name}=={version} to {where} failed: {reply.error_text()}{reason}{hint}")
    if failed:
        hub.fatal(f"push of {name}=={version} to {where} failed: {failed[-1]}")
    hub.info(f"pushed {name}=={version} from {hub.index_name(index)} to {where}")
    return 0
