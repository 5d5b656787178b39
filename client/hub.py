"""Shared machinery of all subcommands: state, output, HTTP and index resolution.

Every command gets one ``Hub``.  It keeps the HTTP conventions of the devpi
wire protocol in one place (Accept/content-type JSON, ``X-Devpi-Auth``,
envelope parsing, turning failures into one-line errors) so commands stay
short.  ``requests`` is imported only when the first request is made, which
keeps ``devpi --help`` fast.
"""
from __future__ import annotations

import argparse
import base64
import http
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

from devpi.client.config import ClientState, default_clientdir
from devpi.client.errors import DevpiError, one_line

_NO_BODY = object()


def client_version() -> str:
    """Version of the installed distribution (looked up lazily: importlib.metadata is slow)."""
    try:
        from importlib.metadata import version

        return version("devpi")
    except Exception:
        return "0+unknown"


def is_url(text: str) -> bool:
    """True for an http(s) URL; the scheme is case-insensitive as RFC 3986 says."""
    return text[:8].lower().startswith(("http://", "https://"))


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d+(/.*)?$")
# What the server refuses in user and index names (its check_user_or_index_name): ASCII
# control characters, space and punctuation other than -._@ -- copied here because the
# client must not import the server, and a name with '/', '?' or '#' would otherwise
# silently address another resource (``alice/dev`` as a *user* name is an index).
_NAME_FORBIDDEN = re.compile(r"[\x00-\x20\x7f!\"#$%&'()*+,/:;<=>?\[\\\]^`{|}~]")


def name_problem(name: str, what: str) -> str | None:
    """Why ``name`` cannot be a user or index name (None if it can), checked before any request."""
    if not name:
        return f"empty {what}"
    if len(name) > 100:
        return f"invalid {what} {name!r}: longer than 100 characters"
    if _NAME_FORBIDDEN.search(name) or name.startswith(("+", ".")):
        return f"invalid {what} {name!r}: use letters, digits and -._@ only"
    return None


def url_problem(text: str) -> str | None:
    """Why ``text`` is not a usable server/index URL, for things that look like one.

    Returns None for anything that is neither URL-like nor ``host:port`` (a
    ``USER/INDEX`` name).  Catching these early gives one clear line instead of
    "no server in use" or "invalid index name" for a mistyped URL.
    """
    m = _SCHEME.match(text)
    if m:
        scheme = m.group(1).lower()
        if scheme not in ("http", "https"):
            return f"unsupported URL scheme {m.group(1)!r} in {text!r}: use http:// or https://"
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError as e:
            return f"invalid URL {text!r}: {one_line(str(e))}"
        if not parts.hostname:
            return f"invalid URL {text!r}: no host name"
        return None
    if _HOST_PORT.match(text):
        return f"{text!r} has no URL scheme: did you mean 'http://{text}'?"
    return None


def normalize_url(text: str) -> str:
    """The URL with a lower-case scheme (``HTTP://h`` -> ``http://h``), so stored URLs compare equal."""
    m = _SCHEME.match(text)
    return m.group(1).lower() + text[len(m.group(1)):] if m else text


def looks_like_devpi(reply: Reply) -> bool:
    """Whether a reply comes from a devpi server: its JSON envelope or its X-Devpi-* headers."""
    if any(key.lower().startswith("x-devpi-") for key in reply.headers):
        return True
    return isinstance(reply.json, dict) and ("result" in reply.json or "message" in reply.json)


def strip_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """Split ``https://user:pw@host/...`` into the bare URL and (user, pw)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    from urllib.parse import unquote

    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, (unquote(parts.username), unquote(parts.password or ""))


def url_with_auth(url: str, user: str, password: str) -> str:
    """Embed credentials for pip/tox (they send them as HTTP Basic auth)."""
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def mask_auth(url: str) -> str:
    """Hide the token when showing a URL that carries credentials."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{parts.username}:****@{netloc}", parts.path, parts.query, parts.fragment))


class Reply:
    """An HTTP reply with the devpi JSON envelope unpacked."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.status_code: int = response.status_code
        self.reason: str = response.reason or ""
        self.url: str = response.url
        self.headers = response.headers
        self.json: Any = None
        ctype = response.headers.get("content-type", "")
        if "json" in ctype.split(";")[0]:
            try:
                self.json = response.json()
            except ValueError:
                self.json = None

    @property
    def result(self) -> Any:
        return self.json.get("result") if isinstance(self.json, dict) else None

    @property
    def type(self) -> str | None:
        return self.json.get("type") if isinstance(self.json, dict) else None

    @property
    def message(self) -> str | None:
        if isinstance(self.json, dict) and self.json.get("message"):
            return one_line(self.json["message"])
        return None

    def error_text(self) -> str:
        """``404 Not Found: no project 'x'`` -- the message from the JSON body or reason phrase."""
        try:
            phrase = http.HTTPStatus(self.status_code).phrase
        except ValueError:
            phrase = ""
        msg = self.message
        if not msg and self.reason and self.reason != phrase:
            msg = one_line(self.reason)
        head = f"{self.status_code} {phrase}".strip()
        return f"{head}: {msg}" if msg else head


class Hub:
    """Per-invocation context handed to every command function."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        clientdir = getattr(args, "clientdir", None)
        self.clientdir = Path(clientdir).expanduser() if clientdir else default_clientdir()
        self._state: ClientState | None = None
        self._session: Any = None
        self.verbose = getattr(args, "verbose", 0) or 0
        self.debug = bool(getattr(args, "debug", False))

    # -- output ----------------------------------------------------------
    def info(self, msg: str = "") -> None:
        print(msg, flush=True)

    def warn(self, msg: str) -> None:
        print(f"devpi: warning: {one_line(msg)}", file=sys.stderr, flush=True)

    def debugmsg(self, msg: str) -> None:
        if self.debug or self.verbose > 1:
            print(f"devpi: debug: {msg}", file=sys.stderr, flush=True)

    def fatal(self, msg: str, exitcode: int = 1) -> NoReturn:
        """End the command with one readable error line (main() prints it)."""
        raise DevpiError(msg, exitcode)

    # -- state -------------------------------------------------------------
    @property
    def state(self) -> ClientState:
        if self._state is None:
            self._state = ClientState(self.clientdir)
        return self._state

    @property
    def root(self) -> str:
        """Server root URL (no trailing slash); error if no server is in use."""
        root = self.state.root_url
        if not root:
            self.fatal("no server in use: run 'devpi use http://HOST:PORT' first")
        return root

    @property
    def login(self) -> tuple[str, str] | None:
        return self.state.get_login(self.state.root_url)

    @property
    def user(self) -> str | None:
        login = self.login
        return login[0] if login else None

    def require_login(self) -> str:
        user = self.user
        if not user:
            self.root  # noqa: B018 -- "no server in use" is the more precise error
            self.fatal("not logged in: run 'devpi login USER' first")
        return user

    def confirm(self, question: str) -> bool:
        """Ask yes/no unless -y; refuse (instead of hanging) when nobody can answer."""
        if getattr(self.args, "yes", False):
            return True
        if not sys.stdin or not sys.stdin.isatty():
            self.fatal(f"{question} -- needs confirmation: pass -y to proceed without asking")
        try:
            answer = input(f"{question} [yes/no]: ")
        except EOFError:
            answer = ""
        return answer.strip().lower() in ("y", "yes")

    # -- index resolution -----------------------------------------------------
    def index_url(self, name: str | None = None) -> str:
        """URL of an index given as URL, ``user/index``, ``index`` or None (current)."""
        if not name:
            index = os.environ.get("DEVPI_INDEX") or None
            if index:
                return self.index_url(index)
            current = self.state.index
            if not current:
                self.root  # noqa: B018
                self.fatal("no index in use: run 'devpi use USER/INDEX' first (see 'devpi use -l')")
            return current.rstrip("/")
        problem = url_problem(name)
        if problem:
            self.fatal(problem)
        if is_url(name):
            return normalize_url(name).rstrip("/")
        return f"{self.root}/{self.qualify_index(name)}"

    def qualify_index(self, name: str) -> str:
        """``user/index`` for ``index`` (the logged-in user's) or ``user/index``.

        Both parts are checked like the server checks names, so that ``?``/``#``
        cannot turn the index name into a query or fragment of some other URL.
        """
        problem = url_problem(name)
        if problem:
            self.fatal(problem)
        name = name.strip("/")
        if name.count("/") > 1:
            self.fatal(f"invalid index name '{name}': expected USER/INDEX")
        if "/" in name:
            user, index = name.split("/")
            self.check_name(user, "user name")
        else:
            index = name
        self.check_name(index, "index name")
        if "/" not in name:
            user = self.user
            if not user:
                self.fatal(f"cannot resolve index '{name}' without login: use USER/{name}")
            name = f"{user}/{name}"
        return name

    def check_name(self, name: str, what: str) -> str:
        """Refuse a user or index name the server would refuse, before any request is sent."""
        problem = name_problem(name, what)
        if problem:
            self.fatal(problem)
        return name

    def index_name(self, url: str) -> str:
        """``user/index`` for an index URL on the current server."""
        root = self.state.root_url or ""
        if root and url.startswith(root + "/"):
            return url[len(root) + 1:].strip("/")
        return url

    def index_api(self, name: str | None) -> dict[str, Any]:
        """``/+api`` of an index given with ``--index`` (its simpleindex, pypisubmit, features).

        For the current index the stored values are used without a request.
        """
        if not name and not os.environ.get("DEVPI_INDEX"):
            url = self.index_url(None)
            cur = self.state.current
            return {
                "index": url,
                "simpleindex": cur.get("simpleindex") or f"{url}/+simple/",
                "pypisubmit": cur.get("pypisubmit"),
                "features": self.state.features,
            }
        url = self.index_url(name)
        iname = self.index_name(url)
        reply = self.request("GET", url + "/+api", check=False)
        if reply.status_code == 404 and looks_like_devpi(reply):
            self.fatal(f"index {iname} not found ({reply.error_text()})")
        self.check_reply("GET", url + "/+api", reply, error_prefix=f"index {iname}")
        result = reply.result if isinstance(reply.result, dict) else {}
        info = {k: result.get(k) for k in ("index", "simpleindex", "pypisubmit", "features")}
        info["index"] = (info["index"] or url).rstrip("/")
        info["simpleindex"] = info["simpleindex"] or f"{info['index']}/+simple/"
        info["features"] = info["features"] or []
        return info

    # -- HTTP ------------------------------------------------------------------
    @property
    def session(self) -> Any:
        if self._session is None:
            import platform

            import requests

            s = requests.Session()
            s.headers["User-Agent"] = (
                f"devpi-client/{client_version()} (py{platform.python_version()}; {sys.platform}) devpi"
            )
            s.trust_env = True
            s.cert = self.state.get_client_cert(self.state.root_url)  # devpi use --client-cert
            self._session = s
        return self._session

    def stored_root_for(self, url: str) -> str | None:
        """The server root we hold credentials for that ``url`` lives under (longest match)."""
        roots = set((self.state.auth.get("auth") or {}).keys()) | set(
            (self.state.auth.get("basic_auth") or {}).keys()
        )
        best = None
        for root in roots:
            if (url == root or url.startswith(root + "/")) and (best is None or len(root) > len(best)):
                best = root
        return best

    def auth_headers(self, url: str) -> dict[str, str]:
        """X-Devpi-Auth for requests to a server we logged in to (never leaked to other hosts)."""
        headers: dict[str, str] = {}
        root = self.stored_root_for(url)
        if not root:
            return headers
        login = self.state.get_login(root)
        if login:
            raw = f"{login[0]}:{login[1]}".encode()
            headers["X-Devpi-Auth"] = base64.b64encode(raw).decode("ascii")
        basic = self.state.get_basic_auth(root)
        if basic:
            raw = f"{basic[0]}:{basic[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        return headers

    def request(
        self,
        method: str,
        url: str,
        body: Any = _NO_BODY,
        *,
        params: dict[str, str] | None = None,
        expect_type: str | None = None,
        ok: tuple[int, ...] = (200, 201),
        check: bool = True,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        data: Any = None,
        timeout: float | tuple[float, float] = (15, 600),
        error_prefix: str | None = None,
    ) -> Reply:
        """Send one request the devpi way and return the Reply.

        With ``check`` (the default) every failure becomes a DevpiError with one
        readable line: unreachable server, HTTP error with the server's message,
        or a reply of an unexpected ``type``.
        """
        import requests

        hdrs = {"Accept": "application/json"}
        if body is not _NO_BODY:
            hdrs["content-type"] = "application/json"
            data = json.dumps(body)
        if auth:
            hdrs.update(self.auth_headers(url))
        if headers:
            hdrs.update(headers)
        self.debugmsg(f"{method} {url} {params or ''}")
        try:
            response = self.session.request(
                method, url, params=params, data=data, headers=hdrs, timeout=timeout, allow_redirects=True
            )
        except requests.exceptions.SSLError as e:
            base = _base_url(url)
            if "WRONG_VERSION_NUMBER" in str(e) or "wrong version number" in str(e):
                self.fatal(f"the server at {base} does not speak TLS: use {'http' + base[len('https'):]} "
                           "(or put it behind a TLS proxy)")
            self.fatal(f"TLS with the server at {base} failed: {_connection_reason(e)}")
        except requests.exceptions.ConnectionError as e:
            base = _base_url(url)
            self.fatal(f"cannot reach server at {base}: {_connection_reason(e)}")
        except requests.exceptions.Timeout:
            self.fatal(f"server at {_base_url(url)} did not answer in time ({method} {url})")
        except requests.exceptions.RequestException as e:
            self.fatal(f"request {method} {url} failed: {e}")
        reply = Reply(response)
        self.debugmsg(f"-> {reply.status_code} {reply.reason} type={reply.type}")
        api_version = reply.headers.get("X-Devpi-Api-Version")
        if api_version is not None and api_version != "2":
            self.fatal(f"server at {_base_url(url)} speaks devpi API version {api_version}, this client only 2")
        if reply.status_code == 401 and reply.headers.get("Location") and self.login:
            # devpi's signal for "login expired": forget the stale token
            self.state.del_login(self.root)
            self.warn("your login expired and was removed: run 'devpi login' again")
        if not check:
            return reply
        return self.check_reply(method, url, reply, ok=ok, expect_type=expect_type, error_prefix=error_prefix)

    def check_reply(
        self,
        method: str,
        url: str,
        reply: Reply,
        *,
        ok: tuple[int, ...] = (200, 201),
        expect_type: str | None = None,
        error_prefix: str | None = None,
    ) -> Reply:
        """The checks of ``request(check=True)``, for callers that first look at some statuses themselves."""
        if reply.status_code not in ok:
            prefix = f"{error_prefix}: " if error_prefix else ""
            if reply.status_code in (404, 405) and not looks_like_devpi(reply):
                self.not_devpi(method, url, reply)
            hint = ""
            if reply.status_code in (401, 403) and not self.login:
                hint = " (not logged in: run 'devpi login USER')"
            self.fatal(f"{prefix}{reply.error_text()}{hint}")
        if expect_type and reply.type != expect_type:
            if not looks_like_devpi(reply):
                self.not_devpi(method, url, reply)
            self.fatal(
                f"unexpected reply from {method} {url}: expected type {expect_type!r}, got {reply.type!r}"
            )
        return reply

    def not_devpi(self, method: str, url: str, reply: Reply) -> NoReturn:
        """Fail for a reply that is no devpi JSON (a web server or proxy answering instead).

        Without this an empty JSON-less reply would read as "no users/indexes".
        """
        ctype = reply.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        self.fatal(f"{_base_url(url)} does not look like a devpi server "
                   f"({method} {url} answered {reply.status_code} with {ctype}, not devpi JSON)")

    def project_not_found(self, index: str, name: str, reply: Reply) -> NoReturn:
        """Explain a 404 for ``INDEX/PROJECT``: a missing index or a missing project.

        The 404 alone does not tell which; asking for the index does (and works
        with any devpi server, whatever its message says).
        """
        iname = self.index_name(index)
        if not looks_like_devpi(reply):
            self.not_devpi("GET", f"{index}/{name}", reply)
        check = self.request("GET", index, params={"no_projects": ""}, check=False)
        if check.status_code == 404:
            self.fatal(f"index {iname} not found ({check.error_text()})")
        self.fatal(f"project {name} not found on index {iname}")


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _connection_reason(exc: Exception) -> str:
    """Dig the meaningful bit ('Connection refused') out of urllib3's nested exception text."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "nodename nor servname",
                   "No route to host", "timed out", "Temporary failure in name resolution",
                   "Connection reset", "Remote end closed connection", "certificate verify failed"):
        if marker in text:
            return marker
    return one_line(text)[:200]
