"""``devpi test``: download a release from the current index, run its tox suite, report to the server.

The tested file is the one the index serves (hash-checked), installed with
``tox --installpkg`` rather than rebuilt, and its dependencies resolve
through the current index (``PIP_INDEX_URL`` / ``UV_INDEX_URL`` with the
login embedded). While tox runs, each pytest result streams to the server
as a live test run (see ``testing_runner`` and ``testing_reporter``); the
tox report is attached at the end as devpi's classic toxresult. With
``--tx`` the same happens on several execnet gateways in parallel, each
run tagged with the host, platform and python it ran on. The exit code is
tox's (the first non-zero one of several gateways).
"""
from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from devpi.client.cli import add_command, add_index_option
from devpi.client.hub import Hub, url_with_auth
from devpi.client.spec import normalize, parse_spec, sort_versions
from devpi.client.testing_reporter import RunReporter

DESCRIPTION = """\
Download a release from the current index and run its tox tests; results go to the server.

  devpi test tinypkg                         newest version: its sdist, all default tox envs
  devpi test 'tinypkg==1.0' -e py312         one tox env
  devpi test tinypkg --select '\\.whl$'       install the wheel (tox config still comes from the sdist)
  devpi test tinypkg -- -k slow              arguments after -- go to the test command ({posargs})
  devpi test tinypkg otherpkg                several releases, one after the other
  devpi test --list tinypkg                  only show the file and tox config it would test with
  devpi test --fallback-ini ci/tox.ini tinypkg   tox config when the sdist has none (setuptools leaves it out);
                                             run in the project's checkout, the checkout's config is used
  devpi test --tx popen//python=python3.12 --tx ssh=buildhost//python=python3.13 tinypkg
                                             the same, in parallel, on several execnet gateways
"""
SDIST_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz")
DEFAULT_RUN_TIMEOUT = 120.0


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "test", run, help="run the tox tests of a release and upload the results",
                    description=DESCRIPTION)
    p.add_argument("pkgspec", nargs="+", metavar="NAME[SPEC]",
                   help="project name, optionally with a version spec; several are tested one after the other "
                        "(arguments after -- go to the test command: {posargs} in the tox config)")
    p.set_defaults(posargs=[])  # main.py hands over what follows '--' (pkgspec takes every positional)
    add_index_option(p)
    p.add_argument("-e", dest="venv", metavar="ENV", default=None,
                   help="tox env(s) to run, comma separated (default: the config's env_list)")
    p.add_argument("-c", dest="toxini", metavar="PATH", default=None,
                   help="tox config inside the sdist (default: tox.ini, pyproject.toml, setup.cfg, tox.toml)")
    p.add_argument("--fallback-ini", metavar="PATH", default=None,
                   help="tox config to use when the sdist has none: a path inside the unpacked sdist, "
                        "else a file here (relative or absolute)")
    p.add_argument("--tox-args", "--toxargs", dest="tox_args", metavar="ARGS", default="",
                   help="extra tox options, as one shell-quoted string")
    p.add_argument("--select", "-s", metavar="REGEX", default=None,
                   help="test the release file whose name matches REGEX (e.g. a wheel) instead of the sdist")
    p.add_argument("--list", "-l", action="store_true",
                   help="only show the file that would be tested and the tox config it would use")
    p.add_argument("--tx", metavar="SPEC", action="append", default=[],
                   help="run on an execnet gateway (popen//python=python3.12, ssh=host, socket=...); repeatable")
    p.add_argument("--no-upload", action="store_true", help="do not send results to the server")
    p.add_argument("--run-timeout", metavar="SECONDS", type=float, default=DEFAULT_RUN_TIMEOUT,
                   help="silence after which the server marks this run interrupted; the client sends "
                        f"heartbeats well within it (default: {DEFAULT_RUN_TIMEOUT:.0f})")


# -- which release and file ---------------------------------------------------------------------
def find_release(hub: Hub, index: str, text: str) -> tuple[str, str, str, list[dict[str, Any]]]:
    """(name, version, project URL, release file links) of the best release matching ``text``."""
    spec = parse_spec(hub, text)
    url = f"{index}/{normalize(spec.name)}"
    reply = hub.request("GET", url, check=False)
    iname = hub.index_name(index)
    if reply.status_code == 404:
        hub.project_not_found(index, spec.name, reply)
    if reply.status_code >= 400 or reply.type != "projectconfig" or not isinstance(reply.result, dict):
        hub.fatal(f"project {spec.name} on index {iname}: {reply.error_text()}")
    for version in sort_versions(list(reply.result)):
        if not spec.matches(version):
            continue
        data = reply.result[version] or {}
        links = [link for link in data.get("+links") or [] if link.get("rel") == "releasefile"]
        if links:
            return data.get("name") or spec.name, version, reply.url, links
    hub.fatal(f"no release of {spec.name} matching {text!r} with files on index {iname}")


def basename(link: dict[str, Any]) -> str:
    return link["href"].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def choose_files(hub: Hub, name: str, version: str, links: list[dict[str, Any]],
                 select: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sdist (for the tox config) and the file to install and test (the sdist, or --select)."""
    sdists = sorted((lk for lk in links if basename(lk).endswith(SDIST_SUFFIXES)),
                    key=lambda lk: not basename(lk).endswith(".tar.gz"))
    if not sdists:
        hub.fatal(f"need at least one sdist distribution of {name} {version} (the tox config comes from it)")
    if not select:
        return sdists[0], sdists[0]
    try:
        pattern = re.compile(select)
    except re.error as e:
        hub.fatal(f"invalid --select regex {select!r}: {e}")
    chosen = [lk for lk in links if pattern.search(basename(lk))]
    if not chosen:
        hub.fatal(f"no file of {name} {version} matches --select {select!r}: "
                  + ", ".join(basename(lk) for lk in links))
    return sdists[0], chosen[0]


def expected_sha256(link: dict[str, Any]) -> str | None:
    hashes = link.get("hashes") or {}
    if hashes.get("sha256"):
        return str(hashes["sha256"])
    spec = link.get("hash_spec") or ""
    if spec.startswith("sha256="):
        return spec[len("sha256="):]
    frag = link["href"].partition("#")[2]
    return frag[len("sha256="):] if frag.startswith("sha256=") else None


def download(hub: Hub, link: dict[str, Any], dest: Path) -> Path:
    import requests
    from devpi.client.progress import Progress

    url = link["href"].split("#", 1)[0]
    path = dest / basename(link)
    digest = hashlib.sha256()
    try:
        with hub.session.get(url, headers=hub.auth_headers(url), stream=True, timeout=(15, 600)) as r:
            if r.status_code != 200:
                hub.fatal(f"cannot download {url}: {r.status_code} {r.reason}")
            length = r.headers.get("Content-Length")
            with open(path, "wb") as f, Progress(f"downloading {path.name}",
                                                 int(length) if length and length.isdigit() else None) as progress:
                for chunk in r.iter_content(1 << 16):
                    digest.update(chunk)
                    f.write(chunk)
                    progress.update_to(f.tell())
    except requests.RequestException as e:
        hub.fatal(f"cannot download {url}: {e}")
    want = expected_sha256(link)
    if want and digest.hexdigest() != want:
        hub.fatal(f"{path.name}: sha256 mismatch (index says {want}, downloaded {digest.hexdigest()})")
    hub.info(f"received {url}" + (" (sha256 verified)" if want else ""))
    return path


# -- running ------------------------------------------------------------------------------------
def index_env(hub: Hub, simpleindex: str) -> dict[str, str]:
    root = hub.stored_root_for(simpleindex)
    login = hub.state.get_login(root) if root else None
    url = url_with_auth(simpleindex, *login) if login else simpleindex
    return {"PIP_INDEX_URL": url, "UV_INDEX_URL": url}


def tox_args(hub: Hub, args: argparse.Namespace) -> list[str]:
    """The tox command line options; a --tox-args string the shell rules cannot split is an error."""
    try:
        out = shlex.split(args.tox_args or "")
    except ValueError as e:
        hub.fatal(f"cannot parse --tox-args {args.tox_args!r}: {str(e).lower()}")
    if args.venv:
        out += ["-e", args.venv]
    if args.posargs:
        out += ["--", *args.posargs]
    return out


def plugin_source() -> str:
    return (Path(__file__).parent / "testing_plugin.py").read_text(encoding="utf-8")


def run(hub: Hub, args: argparse.Namespace) -> int:
    """Test each NAME[SPEC] in turn; the exit code is the first non-zero one."""
    toxargs = tox_args(hub, args)  # before any download: a typo must not cost one
    info = hub.index_api(args.index)
    codes = [run_one(hub, args, info, pkgspec, toxargs) for pkgspec in args.pkgspec]
    return next((c for c in codes if c), 0)


def run_one(hub: Hub, args: argparse.Namespace, info: dict[str, Any], pkgspec: str, toxargs: list[str]) -> int:
    name, version, _url, links = find_release(hub, info["index"], pkgspec)
    sdist_link, test_link = choose_files(hub, name, version, links, args.select)
    with tempfile.TemporaryDirectory(prefix="devpi-test-dl-") as tmp:
        sdist = download(hub, sdist_link, Path(tmp))
        # the tox config is settled before a run is opened: a release without one is not a test result
        config = config_spec(hub, args, sdist, name, Path(tmp) / "inspect")
        file_href = urljoin(info["index"] + "/", test_link["href"])
        if args.list:
            hub.info(f"would test: {file_href.split('#', 1)[0]}")
            hub.info(f"tox config: {config_description(config, sdist)}")
            return 0
        tested = sdist if test_link is sdist_link else download(hub, test_link, Path(tmp))
        spec = {"sdist": sdist.name, "installpkg": tested.name, **config, "toxargs": toxargs,
                "env": index_env(hub, info["simpleindex"]), "plugin_source": plugin_source()}
        if not args.tx:
            return run_local(hub, args, spec, {sdist.name: sdist, tested.name: tested}, file_href)
        data = {p.name: p.read_bytes() for p in {sdist, tested}}
        if spec.get("config_path"):  # the gateway has no such file: send its text
            path = Path(spec.pop("config_path"))
            spec["config_file"] = {"name": path.name, "text": path.read_text(encoding="utf-8", errors="replace")}
        return run_gateways(hub, args, {**spec, "files": data, "capture": True}, file_href)


# -- which tox config ---------------------------------------------------------------------------
NO_CONFIG_HINT = ("pass --fallback-ini PATH (a tox config inside the sdist, or a file here), or run 'devpi test' "
                  "in the project's checkout to use its tox config")


def config_spec(hub: Hub, args: argparse.Namespace, sdist: Path, name: str, inspect: Path) -> dict[str, Any]:
    """Where the tox config comes from, as runner spec keys; ends the command when there is none.

    In order: ``-c`` (inside the sdist, or a file here), the sdist's own config, ``--fallback-ini``
    (inside the sdist, else a file here), and the config of the checkout ``devpi test`` runs in,
    when that checkout is the tested project (setuptools leaves tox.ini out of sdists).
    """
    from devpi.client import testing_runner

    try:
        projdir = testing_runner.unpack(sdist, inspect)
    except testing_runner.RunnerError as e:
        hub.fatal(str(e))
    if args.toxini:
        if not Path(args.toxini).is_absolute() and (projdir / args.toxini).is_file():
            return {"config": args.toxini}
        local = Path(args.toxini).expanduser()
        if local.is_file():
            return {"config_path": str(local.resolve())}
        hub.fatal(f"tox config {args.toxini} (-c) is neither in {sdist.name} nor a file here")
    if testing_runner.locate_config(projdir) is not None:
        return {"config": None}
    if args.fallback_ini:
        if not Path(args.fallback_ini).is_absolute() and (projdir / args.fallback_ini).is_file():
            return {"config": args.fallback_ini}
        local = Path(args.fallback_ini).expanduser()
        if local.is_file():
            return {"config_path": str(local.resolve())}
        hub.fatal(f"--fallback-ini {args.fallback_ini}: no such file in {sdist.name} nor here ({Path.cwd()})")
    here = Path.cwd()
    if checkout_name(here) == normalize(name):
        found = testing_runner.locate_config(here)
        if found is not None:
            hub.info(f"{sdist.name} has no tox config: using {found.name} of the checkout here ({here})")
            return {"config_path": str(found)}
    hub.fatal(f"no tox config in {sdist.name} (tox.ini, pyproject.toml [tool.tox], setup.cfg [tox:tox], tox.toml; "
              f"setuptools leaves tox.ini out of sdists): {NO_CONFIG_HINT}")


def config_description(config: dict[str, Any], sdist: Path) -> str:
    if config.get("config_path"):
        return config["config_path"]
    return f"{config.get('config') or 'found by tox'} in {sdist.name}"


def checkout_name(path: Path) -> str | None:
    """The normalized project name of the checkout at ``path`` (pyproject.toml, setup.cfg or setup.py)."""
    import configparser
    import tomllib

    try:
        with open(path / "pyproject.toml", "rb") as f:
            value = (tomllib.load(f).get("project") or {}).get("name")
        if isinstance(value, str) and value:
            return normalize(value)
    except (OSError, ValueError):
        pass
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path / "setup.cfg", encoding="utf-8")
        if parser.has_option("metadata", "name"):
            return normalize(parser.get("metadata", "name"))
    except (configparser.Error, OSError, ValueError):
        pass
    try:
        text = (path / "setup.py").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r"""\bname\s*=\s*['"]([A-Za-z0-9._-]+)['"]""", text)
    return normalize(m.group(1)) if m else None


def run_local(hub: Hub, args: argparse.Namespace, spec: dict[str, Any], paths: dict[str, Path],
              file_href: str) -> int:
    from devpi.client import testing_runner

    reporter = RunReporter(hub, file_href, testing_runner.describe(), "local", args.run_timeout,
                           upload=not args.no_upload)
    reporter.open()

    def emit(kind: str, data: Any) -> None:
        if kind == "event":
            reporter.add_event(data)
        elif kind == "command":
            hub.info("-->  " + " ".join(shlex.quote(str(c)) for c in data))
        elif kind == "done":
            report_end(hub, reporter.finish(data["exitcode"], data["toxresult"]), data)

    try:
        result = testing_runner.run({**spec, "paths": {k: str(v) for k, v in paths.items()}, "capture": False},
                                    emit)
    except KeyboardInterrupt:
        reporter.finish(None, None, interrupted=True, error="interrupted by the user")
        raise
    except testing_runner.RunnerError as e:
        reporter.finish(None, None, error=str(e))
        hub.fatal(str(e))
    return int(result["exitcode"])


def report_end(hub: Hub, run_doc: dict[str, Any] | None, result: dict[str, Any], prefix: str = "") -> None:
    if run_doc:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(run_doc.get("counts", {}).items())) or "no pytest results"
        hub.info(f"{prefix}test run {run_doc['id']} {run_doc['status']} ({counts}) "
                 f"on {run_doc['host']} {run_doc['platform']} python {run_doc['python']}")
    elif result.get("toxresult") is None:
        hub.warn(f"{prefix}tox wrote no result report (exit code {result.get('exitcode')})")


def run_gateways(hub: Hub, args: argparse.Namespace, spec: dict[str, Any], file_href: str) -> int:
    try:
        import execnet
    except ImportError:
        hub.fatal("--tx needs execnet: pip install execnet")
    from devpi.client import testing_runner

    group = execnet.Group()
    gateways = []
    try:
        for txspec in args.tx:
            try:
                gateways.append((txspec, group.makegateway(txspec)))
            except Exception as e:  # execnet raises many kinds here: make it one line
                hub.fatal(f"cannot start gateway {txspec!r}: {type(e).__name__}: {e}")
        results: dict[str, int] = {}
        reporters: list[RunReporter] = []
        lock = threading.Lock()
        threads = [threading.Thread(target=_drive_gateway, daemon=True,
                                    args=(hub, args, gw, txspec, spec, file_href, testing_runner, results, lock,
                                          reporters))
                   for txspec, gw in gateways]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            for reporter in list(reporters):
                reporter.finish(None, None, interrupted=True, error="interrupted by the user")
            raise
    finally:
        group.terminate(timeout=10)
    codes = [results.get(txspec, 1) for txspec, _ in gateways]
    return next((c for c in codes if c), 0)


def _drive_gateway(hub: Hub, args: argparse.Namespace, gw: Any, txspec: str, spec: dict[str, Any],
                   file_href: str, runner_module: Any, results: dict[str, int], lock: threading.Lock,
                   reporters: list[RunReporter]) -> None:
    prefix = f"[{gw.id}] "

    def say(line: str) -> None:
        with lock:
            print(prefix + line, flush=True)

    reporter: RunReporter | None = None
    try:
        channel = gw.remote_exec(runner_module)
        channel.send(spec)
        while True:
            kind, data = channel.receive()
            if kind == "hello":
                say(f"{txspec}: {data['host']} {data['platform']} python {data['python'].split()[0]}")
                reporter = RunReporter(hub, file_href, data, txspec, args.run_timeout, upload=not args.no_upload)
                reporters.append(reporter)
                with lock:
                    reporter.open()
            elif kind == "event" and reporter:
                reporter.add_event(data)
            elif kind == "out":
                say(data)
            elif kind == "command":
                say("-->  " + " ".join(shlex.quote(str(c)) for c in data))
            elif kind == "error":
                say(f"error: {data}")
                if reporter:
                    reporter.finish(None, None, error=str(data))
                results[txspec] = 1
                return
            elif kind == "done":
                doc = reporter.finish(data["exitcode"], data["toxresult"]) if reporter else None
                with lock:
                    report_end(hub, doc, data, prefix)
                results[txspec] = int(data["exitcode"])
                return
    except Exception as e:  # the gateway died (EOFError, RemoteError...): the run did not finish
        say(f"gateway failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
        if reporter:
            reporter.finish(None, None, interrupted=True, error=f"gateway {txspec} failed: {e}")
        results[txspec] = 1

