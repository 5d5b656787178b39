"""``devpi list``: projects of an index, or the releases and files of one project.

For one project it shows, per version, every file with the index it comes
from (inherited and shadowed versions included) and a summary of the test
results uploaded by ``devpi test``.
"""
from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urljoin

from devpi.client.cli import add_command, add_index_option
from devpi.client.hub import Hub
from devpi.client.spec import normalize, parse_spec, sort_versions

DESCRIPTION = """\
List projects, or versions and files of a project.

  devpi list                       projects on the current index (its own, not inherited)
  devpi list tinypkg               newest versions with files, source index and test results
  devpi list 'tinypkg>=1.0' --all  every matching version
  devpi list tinypkg -f            also show failed test commands and their output
  devpi list tinypkg --ignore-bases
"""

SHOW_VERSIONS = 3


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "list", run, help="list projects, or versions and files of a project",
                    description=DESCRIPTION)
    p.add_argument("spec", nargs="?", metavar="NAME[SPEC]", help="project name, optionally with a version spec")
    add_index_option(p)
    p.add_argument("--all", action="store_true", help=f"show all matching versions (default: newest {SHOW_VERSIONS})")
    p.add_argument("-t", "--toxresults", action="store_true", help="show test results (shown whenever present)")
    p.add_argument("-f", "--failures", action="store_true", help="show failing test commands and their output")
    p.add_argument("--ignore-bases", action="store_true", help="ignore versions inherited from base indexes")


def run(hub: Hub, args: argparse.Namespace) -> int:
    index = hub.index_url(args.index)
    iname = hub.index_name(index)
    if not args.spec:
        reply = hub.request("GET", index, expect_type="indexconfig", error_prefix=f"index {iname}")
        for name in sorted((reply.result or {}).get("projects") or []):
            hub.info(name)
        return 0
    spec = parse_spec(hub, args.spec)
    url = f"{index}/{normalize(spec.name)}"
    params = {"ignore_bases": ""} if args.ignore_bases else None
    reply = hub.request("GET", url, params=params, check=False)
    if reply.status_code == 404:
        hub.project_not_found(index, spec.name, reply)
    if reply.status_code >= 400:
        hub.fatal(f"project {spec.name} on index {iname}: {reply.error_text()}")
    if reply.type != "projectconfig" or not isinstance(reply.result, dict):
        hub.fatal(f"unexpected reply from {url}: type {reply.type!r}")
    data: dict[str, Any] = reply.result
    versions = [v for v in sort_versions(list(data)) if spec.matches(v)]
    if not versions:
        hub.fatal(f"no version of {spec.name} matching {spec.text!r} on index {iname}")
    shown = versions if args.all else versions[:SHOW_VERSIONS]
    root = hub.state.root_url or ""
    for version in shown:
        verdata = data[version] or {}
        hub.info(f"{verdata.get('name') or spec.name} {version}")
        show_links(hub, reply.url, root, verdata, args)
        for shadow in verdata.get("+shadowing") or []:
            show_links(hub, reply.url, root, shadow, args, prefix="shadowed: ")
        from devpi.client.testing_summary import matrix_lines  # test runs: env x platform -> status

        for line in matrix_lines(hub, index, normalize(spec.name), version):
            hub.info(line)
    if len(shown) < len(versions):
        hub.info(f"({len(versions) - len(shown)} older versions not shown, use --all)")
    return 0


def index_of(href: str, root: str) -> str:
    """``user/index`` a file URL belongs to (the part of the path before ``+f``/``+e``)."""
    path = href[len(root):] if root and href.startswith(root) else href.split("://", 1)[-1].split("/", 1)[-1]
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        if part.startswith("+"):
            return "/".join(parts[:i])
    return "/".join(parts[:2])


def show_links(hub: Hub, base: str, root: str, verdata: dict[str, Any], args: argparse.Namespace,
               prefix: str = "") -> None:
    links = verdata.get("+links") or []
    toxresults: dict[str, list[str]] = {}
    for link in links:
        if link.get("rel") == "toxresult" and link.get("for_href"):
            for_href = urljoin(base, link["for_href"])
            toxresults.setdefault(for_href, []).append(urljoin(base, link["href"]))
    for link in links:
        rel = link.get("rel")
        if rel not in ("releasefile", "doczip"):
            continue
        href = urljoin(base, link.get("href") or "")
        kind = " [docs]" if rel == "doczip" else ""
        yanked = link.get("yanked")
        if yanked is not None and yanked is not False:
            kind += f" [yanked: {yanked}]" if isinstance(yanked, str) and yanked else " [yanked]"
        hub.info(f"  {prefix}{href}  ({index_of(href, root)}){kind}")
        results = toxresults.get(href)
        if results:
            show_toxresults(hub, results, args.failures)


def show_toxresults(hub: Hub, hrefs: list[str], failures: bool) -> None:
    """One line per (host, platform, env): the newest result wins (hrefs sort by time)."""
    newest: dict[tuple[str, str, str], tuple[str, dict[str, Any], dict[str, Any]]] = {}
    for href in sorted(hrefs):
        # a plain GET: with "Accept: application/json" a file URL answers with its metadata instead
        # with the login (sent only to the server it belongs to): a private index's results need it
        reply = hub.request("GET", href, check=False, headers={"Accept": "*/*"})
        data = None
        if reply.status_code == 200:
            try:
                data = json.loads(reply.response.content)
            except ValueError:
                data = None
        if reply.status_code != 200 or not isinstance(data, dict):
            hub.info(f"      could not read test result {href}: {reply.error_text()}")
            continue
        for envname, env in (data.get("testenvs") or {}).items():
            key = (str(data.get("host", "?")), str(data.get("platform", "?")), envname)
            newest[key] = (href, data, env or {})
    for (host, platform, envname), (_href, _data, env) in sorted(newest.items()):
        pyversion = ((env.get("python") or {}).get("version") or "?").split()[0]
        status, failed = env_status(env)
        if envname.startswith(".") and status != "setup failed":
            continue  # tox's packaging envs (.pkg, .pkg_external...): no tests of their own
        hub.info(f"      {host} {platform} {envname} {pyversion} {status}")
        if failures and failed:
            for cmd in failed:
                command = cmd.get("command")
                if isinstance(command, list):
                    command = " ".join(str(c) for c in command)
                hub.info(f"        command: {command}  (exit code {cmd.get('retcode')})")
                for line in str(cmd.get("output") or "").splitlines():
                    hub.info(f"          {line}")


def env_status(env: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    setup = env.get("setup") or []
    test = env.get("test") or []
    bad_setup = [c for c in setup if _retcode(c) != 0]
    if bad_setup:
        return "setup failed", bad_setup
    if not test:
        return ("no tests were run" if setup else "no setup was performed"), []
    bad_test = [c for c in test if _retcode(c) != 0]
    if bad_test:
        return "tests failed", bad_test
    return "tests passed", []


def _retcode(cmd: dict[str, Any]) -> int:
    try:
        return int(cmd.get("retcode") or 0)
    except (TypeError, ValueError):
        return 1
