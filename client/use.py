"""``devpi use``: choose server and index, show them, and point pip/uv at them.

The server's ``/+api`` tells us every URL we need (login, simple index,
upload URL, features), so we store its answer instead of guessing URL
layouts; that is what keeps us compatible with the original devpi-server.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from devpi.client.cli import add_command
from devpi.client.errors import one_line
from devpi.client.hub import Hub, is_url, looks_like_devpi, normalize_url, strip_userinfo, url_problem

DESCRIPTION = """\
Show or set the server and index in use.

  devpi use http://localhost:3141          use a server (no index yet)
  devpi use http://localhost:3141/alice/dev
  devpi use alice/dev                      another index on the same server
  devpi use dev                            an index of the logged-in user
  devpi use                                show server, index, login and pip/uv settings
  devpi use -l                             list all indexes of the server
  devpi use --set-cfg                      make plain pip/uv use the current index
  devpi use --venv .venv --set-cfg         ... inside one virtualenv only
"""


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "use", run, help="show or set the server and index in use; configure pip/uv",
                    description=DESCRIPTION)
    p.add_argument("url", nargs="?", metavar="URL|USER/INDEX",
                   help="server URL or index URL, USER/INDEX, or INDEX of the logged-in user")
    p.add_argument("-l", "--list", action="store_true", help="list the indexes of the server")
    p.add_argument("-u", "--user", metavar="USER", default=None,
                   help="with -l: list only the indexes of USER")
    p.add_argument("--urls", action="store_true",
                   help="also show the server's endpoint URLs (login, upload, pip index)")
    p.add_argument("--local", action="store_true",
                   help="keep the server/index in use in the active virtualenv ($VIRTUAL_ENV/devpi.json): "
                        "while it is active, devpi uses that instead of the client dir's")
    p.add_argument("--client-cert", metavar="PEM_FILE", default=None,
                   help="authenticate to this server with a TLS client certificate (PEM with the key); "
                        "remembered per server, '' forgets it")
    p.add_argument("--set-cfg", action="store_true",
                   help="write pip's user config and uv's user config (with --venv: the virtualenv's "
                        "pip.conf only) so that 'pip install'/'uv pip install' use the current index")
    p.add_argument("-t", "--pip-set-trusted", choices=("yes", "no", "auto"), default=None,
                   help="with --set-cfg: also write pip's trusted-host for the index host (yes), remove it "
                        "(no), or write it for plain-http hosts other than localhost (auto, the default)")
    p.add_argument("--always-set-cfg", choices=("yes", "no"), default=None,
                   help="remember to do --set-cfg (and -t) on every later 'devpi use URL'")
    p.add_argument("--venv", metavar="DIR", default=None,
                   help="virtualenv used by 'devpi install' and 'devpi use --set-cfg' ('-' forgets it)")
    p.add_argument("--delete", action="store_true",
                   help="forget the server and index of this client dir (logins stay)")


def run(hub: Hub, args: argparse.Namespace) -> int:
    state = hub.state
    if args.local:
        make_local(hub)
    if args.client_cert is not None:
        set_client_cert(hub, args)
    if args.delete:
        state.current.clear()
        state.save_current()
        hub.info(f"forgot the server and index in use ({state.current_path})")
        return 0
    if args.venv:
        if args.venv == "-":
            state.update(venvdir=None)
        else:
            venv = Path(args.venv).expanduser().absolute()
            if not venv.is_dir():
                hub.fatal(f"virtualenv directory {venv} does not exist (create it with 'python -m venv {venv}')")
            state.update(venvdir=str(venv))
    if args.always_set_cfg:
        state.update(always_setcfg=args.always_set_cfg == "yes",
                     settrusted=args.pip_set_trusted if args.always_set_cfg == "yes" else None)
    if args.url:
        connect(hub, args.url)
        if args.client_cert is not None:
            state.set_client_cert(hub.root, hub.session.cert)
    if args.list:
        list_indexes(hub, args.user)
        return 0
    if args.set_cfg or (args.url and state.get("always_setcfg")):
        trusted = args.pip_set_trusted or state.get("settrusted") or "auto"
        set_cfg(hub, venv=bool(args.venv and args.venv != "-"), trusted=trusted)
    show(hub, urls=args.urls, as_user=args.user)
    return 0


def make_local(hub: Hub) -> None:
    """``--local``: from now on (while this virtualenv is active) the state lives in it."""
    venv = os.environ.get("VIRTUAL_ENV")
    if not venv:
        hub.fatal("--local needs an active virtualenv ($VIRTUAL_ENV is not set)")
    state = hub.state
    local = Path(venv) / "devpi.json"
    if state.current_path != local:
        state.current_path = local
        state.save_current()  # a copy of what was in use so far
        hub.info(f"created local configuration at {local}")


def set_client_cert(hub: Hub, args: argparse.Namespace) -> None:
    """Use (and, once connected, remember) a client certificate; '' forgets the stored one."""
    if not args.client_cert:
        root = hub.state.root_url
        if root and hub.state.set_client_cert(root, None):
            hub.info(f"forgot the client certificate for {root}")
        hub.session.cert = None
        return
    path = Path(args.client_cert).expanduser().absolute()
    if not path.is_file():
        hub.fatal(f"client certificate {path} does not exist")
    hub.session.cert = str(path)
    if not args.url:
        hub.state.set_client_cert(hub.root, str(path))


def connect(hub: Hub, arg: str) -> None:
    """Ask ``URL/+api`` and remember what it says (after checking the index is usable)."""
    state = hub.state
    basic = None
    problem = url_problem(arg)
    if problem:
        hub.fatal(problem)
    if is_url(arg):
        url, basic = strip_userinfo(normalize_url(arg))
    else:
        url = f"{hub.root}/{hub.qualify_index(arg)}"
    url = url.rstrip("/")
    index_url = simple_index_of(url)
    if index_url is not None:  # pip's index URL pasted: USER/INDEX/+simple[/project]
        hub.info(f"{url}/ is the index's pip URL: using the index {index_url}")
        url = index_url
    headers = {}
    if basic:
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    reply = hub.request("GET", url + "/+api", headers=headers, check=False)
    if reply.status_code in (404, 405) and not looks_like_devpi(reply):
        hub.not_devpi("GET", url + "/+api", reply)
    if reply.status_code == 404:
        path = urlsplit(url).path.strip("/")
        if path:
            hub.fatal(f"index {path} not found on the server ({reply.error_text()})")
        hub.fatal(f"{url} does not look like a devpi server (GET {url}/+api: {reply.error_text()})")
    if reply.status_code >= 400:
        hub.fatal(f"GET {url}/+api: {reply.error_text()}")
    result = reply.result
    if reply.type != "apiconfig" or not isinstance(result, dict) or not result.get("login"):
        hub.fatal(f"{url} does not look like a devpi server (no API config at {url}/+api)")
    login = urljoin(url + "/", result["login"])
    root = login.rsplit("/", 1)[0]
    index = result.get("index")
    index = urljoin(url + "/", index).rstrip("/") if index else None

    def absolute(key: str) -> str | None:
        value = result.get(key)
        return urljoin(url + "/", value) if value else None

    if basic:
        state.set_basic_auth(root, basic[0], basic[1])
    stored = state.get_login(root)
    authstatus = result.get("authstatus") or []
    if stored and (not authstatus or authstatus[0] != "ok"):
        state.del_login(root)
        hub.warn(f"login of '{stored[0]}' at {root} is no longer valid (expired or server secret changed): "
                 "logged off, run 'devpi login' again")
        stored = None
    if index:
        check = hub.request("GET", index, params={"no_projects": ""}, check=False)
        if check.status_code == 404:
            hub.fatal(f"index {hub_name(root, index)} does not exist ({check.error_text()})")
        if check.status_code in (401, 403):
            hub.warn(f"no read access to index {hub_name(root, index)}: you might have to login")
        elif check.status_code >= 400:
            hub.fatal(f"GET {index}: {check.error_text()}")
    given = urlsplit(url)
    told = urlsplit(login)
    if (given.scheme, given.netloc) != (told.scheme, told.netloc):
        hub.warn(f"the server calls itself {told.scheme}://{told.netloc} (you used {given.scheme}://{given.netloc})")
    state.update(
        login=login,
        index=index,
        simpleindex=absolute("simpleindex") if index else None,
        pypisubmit=absolute("pypisubmit") if index else None,
        features=list(result.get("features") or []),
        username=stored[0] if stored else None,
    )
    if index is None:
        state.current.pop("index", None)
        state.save_current()


def simple_index_of(url: str) -> str | None:
    """The index URL of pip's URL ``.../USER/INDEX/+simple`` (or a project page under it), else None."""
    parts = urlsplit(url)
    segments = parts.path.rstrip("/").split("/")
    if "+simple" not in segments:
        return None
    at = segments.index("+simple")
    if at < 2 or len(segments) > at + 2:  # USER/INDEX before it, at most a project after it
        return None
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments[:at]), "", ""))


def hub_name(root: str, url: str) -> str:
    return url[len(root) + 1:] if url.startswith(root + "/") else url


def list_indexes(hub: Hub, user: str | None = None) -> None:
    """``devpi use -l``: every index of every user (or of one), with bases and volatility."""
    if user:
        hub.check_name(user, "user name")
        reply = hub.request("GET", f"{hub.root}/{user}", expect_type="userconfig", error_prefix=f"user {user}")
        result = {user: reply.result} if isinstance(reply.result, dict) else {}
    else:
        reply = hub.request("GET", hub.root + "/", expect_type="list:userconfig")
        result = reply.result if isinstance(reply.result, dict) else {}
    for username in sorted(result):
        indexes = (result[username] or {}).get("indexes") or {}
        for name in sorted(indexes):
            ixconfig = indexes[name] or {}
            bases = ",".join(ixconfig.get("bases") or [])
            extra = f"  bases={bases}" if bases else ""
            kind = ixconfig.get("type", "stage")
            hub.info(f"{username + '/' + name:<24} {kind:<6} volatile={ixconfig.get('volatile')}{extra}")


# -- pip / uv configuration -----------------------------------------------------

def pip_user_config() -> Path:
    """pip's per-user config file (where 'pip config --user' writes)."""
    env = os.environ.get("PIP_CONFIG_FILE")
    if env and env != os.devnull:
        return Path(env)
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "pip" / "pip.ini"
    if sys.platform == "darwin":
        lib = Path.home() / "Library" / "Application Support" / "pip"
        if lib.is_dir():
            return lib / "pip.conf"
        return Path.home() / ".config" / "pip" / "pip.conf"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pip" / "pip.conf"


def uv_user_config() -> Path:
    """uv's per-user ``uv.toml``."""
    env = os.environ.get("UV_CONFIG_FILE")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "uv" / "uv.toml"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "uv" / "uv.toml"


def venv_pip_config(venv: Path) -> Path:
    return venv / ("pip.ini" if sys.platform == "win32" else "pip.conf")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def set_ini_key(text: str, section: str, key: str, value: str) -> str:
    """Set ``key = value`` in ``[section]`` of an INI text, keeping comments and other keys."""
    lines = text.splitlines()
    out: list[str] = []
    in_section = False
    done = False
    section_seen = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if in_section and not done:
                out.append(f"{key} = {value}")
                done = True
            in_section = stripped[1:-1].strip() == section
            section_seen = section_seen or in_section
            out.append(line)
            continue
        if in_section and not done and "=" in stripped and not stripped.startswith(("#", ";")):
            name = stripped.split("=", 1)[0].strip().replace("_", "-")
            if name == key:
                out.append(f"{key} = {value}")
                done = True
                continue
        out.append(line)
    if not done:
        if not section_seen:
            if out and out[-1].strip():
                out.append("")
            out.append(f"[{section}]")
        out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"


def get_ini_key(path: Path, section: str, key: str) -> str | None:
    import configparser

    cp = configparser.RawConfigParser()
    try:
        cp.read(path, encoding="utf-8")
    except (configparser.Error, OSError, ValueError):  # ValueError: not UTF-8
        return None
    if cp.has_option(section, key):
        return cp.get(section, key)
    return None


UV_INDEX_NAME = "devpi"  # the name of the [[index]] table devpi use --set-cfg owns in uv.toml


def set_uv_index(text: str, url: str) -> tuple[str, list[str]]:
    """uv.toml with an ``[[index]]`` named "devpi" as the default index (uv's current form),
    keeping comments and every other table; and notes on what else had to change: another
    index marked ``default`` becomes ``explicit`` (left unmarked, uv would search it before
    the default), and the deprecated top-level ``index-url`` (which an ``[[index]]`` default
    overrides) is removed."""
    import tomlkit

    doc = tomlkit.parse(text)
    notes: list[str] = []
    legacy = doc.get("index-url")
    if legacy is not None:
        del doc["index-url"]
        notes.append(f"removed the deprecated top-level index-url = {legacy}")
    indexes = doc.get("index")
    if indexes is None:
        indexes = tomlkit.aot()
        doc.append("index", indexes)
    ours = None
    for table in indexes:
        if table.get("name") == UV_INDEX_NAME and ours is None:
            ours = table
        elif table.get("default") is True:  # unmarked it would be searched before ours: keep it unused
            del table["default"]
            table["explicit"] = True
            notes.append(f"index {table.get('name') or table.get('url')!r} was uv's default: now explicit "
                         "(used only for packages pinned to it)")
    if ours is None:
        ours = tomlkit.table()
        ours["name"] = UV_INDEX_NAME
        indexes.append(ours)
    ours["url"] = url
    ours["default"] = True
    text = tomlkit.dumps(doc)
    return text.replace("default = true\n[", "default = true\n\n["), notes  # a blank line before what follows


def uv_default_index(path: Path) -> str | None:
    """The index uv will use by default with this config file: the first ``[[index]]``
    marked ``default``, else the top-level ``index-url``; None for uv's own default."""
    import tomllib

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, ValueError):
        return None
    for table in doc.get("index") or []:
        if isinstance(table, dict) and table.get("default") is True and isinstance(table.get("url"), str):
            return table["url"]
    value = doc.get("index-url")
    return value if isinstance(value, str) else None


def _read_config(hub: Hub, path: Path) -> str:
    """Text of a pip/uv config file ('' if missing); unreadable ones end the command with one line.

    The file is rewritten, so one we cannot decode must not be overwritten either.
    """
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except UnicodeDecodeError:
        hub.fatal(f"cannot update {path}: not UTF-8 text (fix or remove it and retry)")
    except OSError as e:
        hub.fatal(f"cannot read {path}: {e.strerror or e}")


def _write(hub: Hub, path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".devpi-tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        hub.fatal(f"cannot write {path}: {e.strerror or e}")


def del_ini_key(text: str, section: str, key: str) -> str:
    """``text`` without ``key`` in ``[section]`` (comments and other keys kept)."""
    out: list[str] = []
    in_section = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            in_section = stripped[1:-1].strip() == section
        elif in_section and "=" in stripped and not stripped.startswith(("#", ";")):
            if stripped.split("=", 1)[0].strip().replace("_", "-") == key:
                continue
        out.append(line)
    return "\n".join(out) + "\n" if out else ""


def set_cfg(hub: Hub, venv: bool, trusted: str = "auto") -> None:
    """Write index-url into pip's (and uv's) config; with a venv only into ``VENV/pip.conf``.

    Credentials are deliberately not written: tokens expire and config files
    get shared; indexes are readable anonymously by default.
    """
    index = hub.index_url()
    simple = hub.state.get("simpleindex") or index + "/+simple/"
    host = urlsplit(simple).hostname or ""
    auto_trusted = urlsplit(simple).scheme == "http" and not _is_loopback(host)
    if venv:
        venvdir = hub.state.get("venvdir")
        targets = [venv_pip_config(Path(venvdir))]
    else:
        targets = [pip_user_config()]
    for path in targets:
        text = _read_config(hub, path)
        text = set_ini_key(text, "global", "index-url", simple)
        if trusted == "yes" or (trusted == "auto" and auto_trusted):
            text = set_ini_key(text, "global", "trusted-host", host)
            hub.info(f"pip: wrote trusted-host = {host} to {path}")
        elif trusted == "no":
            text = del_ini_key(text, "global", "trusted-host")
        _write(hub, path, text)
        hub.info(f"pip: wrote index-url = {simple} to {path}")
    if not venv:
        path = uv_user_config()
        text = _read_config(hub, path)
        try:
            text, notes = set_uv_index(text, simple)
        except Exception as e:  # tomlkit's parse errors have no common base but Exception
            hub.fatal(f"cannot update {path}: not valid TOML ({one_line(str(e))[:200]}); fix or remove it")
        _write(hub, path, text)
        for note in notes:
            hub.warn(f"uv: {note} ({path})")
        effective = uv_default_index(path)
        if effective != simple:  # read back: say what uv will really use
            hub.fatal(f"uv: wrote {path}, but uv's default index there reads {effective!r}, not {simple}")
        hub.info(f"uv:  wrote [[index]] {UV_INDEX_NAME} (default) url = {simple} to {path}")


def show(hub: Hub, urls: bool = False, as_user: str | None = None) -> None:
    """What 'devpi use' without arguments prints: the state of this client dir."""
    state = hub.state
    root = state.root_url
    if not root:
        hub.info("no server in use: run 'devpi use http://HOST:PORT' to connect to one")
        hub.info(f"client dir: {hub.clientdir}")
        return
    user = hub.user
    login = f"logged in as {user}" if user else "not logged in"
    if as_user and as_user != user:
        login = f"not logged in as {as_user}" + (f", but as {user}" if user else "")
    index = state.index
    if index:
        hub.info(f"current devpi index: {index} ({login})")
    else:
        hub.info(f"using server {root} ({login}); no index in use "
                 "('devpi use -l' lists them, 'devpi use USER/INDEX' picks one)")
    if urls:
        for name in ("login", "pypisubmit", "simpleindex"):
            hub.info(f"{name:>19}: {state.get(name) or '-'}")
    cert = state.get_client_cert(root)
    if cert:
        hub.info(f"client certificate: {cert}")
    features = ", ".join(state.features) or "none"
    hub.info(f"supported features: {features}")
    venvdir = state.get("venvdir")
    hub.info(f"venv for install/set-cfg: {venvdir or 'not set'}")
    simple = state.get("simpleindex") or (index + "/+simple/" if index else None)
    pip_path = pip_user_config()
    pip_value = get_ini_key(pip_path, "global", "index-url") if pip_path.exists() else None
    hub.info(f"pip config {pip_path}: {_describe(pip_value, simple, pip_path.exists())}")
    if venvdir:
        vpath = venv_pip_config(Path(venvdir))
        vvalue = get_ini_key(vpath, "global", "index-url") if vpath.exists() else None
        hub.info(f"venv pip config {vpath}: {_describe(vvalue, simple, vpath.exists())}")
    uv_path = uv_user_config()
    uv_value = uv_default_index(uv_path) if uv_path.exists() else None
    hub.info(f"uv config {uv_path}: {_describe(uv_value, simple, uv_path.exists(), 'default index')}")
    hub.info(f"always-set-cfg: {'yes' if state.get('always_setcfg') else 'no'}")
    if simple:
        hub.info(f"to use this index: pip install --index-url {simple} PKG  "
                 f"(or export PIP_INDEX_URL={simple} UV_INDEX_URL={simple}, or 'devpi use --set-cfg')")


def _describe(value: str | None, simple: str | None, exists: bool, what: str = "index-url") -> str:
    if not exists:
        return "no config file"
    if not value:
        return f"{what} not set"
    if simple and value.rstrip("/") == simple.rstrip("/"):
        return f"{what} = {value} (the current index)"
    return f"{what} = {value}"
