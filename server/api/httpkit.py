"""HTTP helpers shared by the views: errors, the JSON envelope, who is asking.

Every error leaves as JSON ``{"message": ...}`` with the right status, the
message repeated in the reason phrase (devpi-client and setuptools print the
reason phrase on upload failures). JSON replies use devpi's envelope,
pretty-printed, with a Content-Type of exactly ``application/json``.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import quote

import bottle

from ..accounts.api_tokens import TOKEN_USER
from ..accounts.api_tokens import looks_like_token as looks_like_api_token
from ..accounts.auth import AuthUnavailable, Identity, parse_basic, parse_devpi_auth
from ..http.trusted_proxies import valid_host
from ..packaging.names import is_user_name
from ..runtime.metrics import AUTH_FAILURES
from .errors import JSON_CT, APIError, json_body, reason_phrase  # their home, free of bottle

# environ keys the authentication leaves for the audit trail (http/audit_trail.py)
AUTH_FAILED = "devpi.auth_failed"  # the user name whose credentials failed
AUTH_USER = "devpi.auth_user"  # the user whose credentials succeeded
INSTALLER_UA = re.compile(r"([^ ]* )*(distribute|setuptools|pip|pex|uv)/.*")


def require_index(core, user: str, index: str):
    """The index named in the URL, or devpi's 404 (the client prints this message)."""
    ix = core.get_index(user, index)
    if ix is None:
        raise APIError(404, f"The stage {user}/{index} could not be found.")
    return ix


def json_reply(result: Any = None, type_: str | None = None, message: str | None = None,
               status: int = 200, headers: dict[str, str] | None = None) -> bottle.HTTPResponse:
    doc: dict[str, Any] = {}
    if type_ is not None:
        doc["type"] = type_
        doc["result"] = result
    if message is not None:
        doc["message"] = message
    resp = bottle.HTTPResponse(json_body(doc), status=status, headers=headers)
    resp.content_type = JSON_CT
    return resp


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> bottle.HTTPResponse:
    resp = bottle.HTTPResponse(json_body({"message": message}), headers=headers)
    resp.status = f"{status} {reason_phrase(message)}"
    resp.content_type = JSON_CT
    return resp


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON: refuse them rather than store what strict
    parsers (ours included, when the value is served back) reject."""
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    """``1e400`` reads as infinity, which would be served back as ``Infinity``."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is too large a number")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """JSON may spell half of a UTF-16 pair (``"\\ud800"``): no Unicode text, and every
    later encode (SQLite, a page) fails on it."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def is_json_type(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type: types a browser cannot send cross-site
    without asking first (CORS preflight), unlike a form's or ``text/plain``."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == JSON_CT or (media.startswith("application/") and media.endswith("+json"))


MAX_JSON_BYTES = 10 * 1024 * 1024  # every JSON body, unless a view says otherwise (tox reports)
MAX_JSON_DEPTH = 64  # devpi's documents nest a handful of levels; tox reports about eight
# Parsed JSON costs up to ~25 bytes of Python objects per body byte ("[{},{},...]"), so the
# byte limit alone does not bound memory. Every item but the first of a list or object follows
# a ",", so counting ",", "[" and "{" bytes (also those inside strings: a conservative count,
# one C pass each) bounds the objects the parser can make: 100,000 items are ~7 MB parsed.
# devpi's own documents have dozens; a tox report with long output some tens of thousands.
MAX_JSON_ITEMS = 100_000
# tox's --result-json report: real ones are KBs to a few hundred KB (the output of each
# command, a list of installed packages); 2 MiB leaves several times that and keeps an
# anonymous upload (acl_toxresult_upload is :ANONYMOUS: by default) at a few MB of memory.
MAX_TOX_REPORT_BYTES = 2 * 1024 * 1024


def _nested_deeper_than(doc: Any, limit: int) -> bool:
    """Without recursion: a document nested past Python's recursion limit must be
    refusable by the very check that measures it."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def read_json(request: bottle.BaseRequest, max_bytes: int = MAX_JSON_BYTES,
              max_items: int = MAX_JSON_ITEMS) -> Any:
    """The request's JSON body (None when empty), read from ``wsgi.input`` at most once and
    never past ``max_bytes`` (see bodies.BodyReader: bottle's ``request.body`` would spool it
    first). A body must say it is JSON: a web page can make a visitor's browser POST a form
    or ``text/plain`` body to us with the Basic credentials it remembers for this server,
    but not one typed ``application/json``."""
    from ..http.request_body import BodyReader

    env = request.environ
    raw = env.get("devpi.json_body")
    if raw is None:
        length = request.content_length
        has_body = length > 0 or (length < 0 and bool(env.get("HTTP_TRANSFER_ENCODING")))  # else: none sent
        if has_body and not is_json_type(env.get("CONTENT_TYPE")):
            raise APIError(415, "Unsupported Media Type: send the JSON body as Content-Type: application/json")
        raw = env["devpi.json_body"] = BodyReader(env, max_bytes).read_all()
    if not raw.strip():
        return None
    brackets = raw.count(b"[") + raw.count(b"{") if len(raw) > MAX_JSON_DEPTH else 0  # fewer: not too deep
    if len(raw) > max_items and brackets + raw.count(b",") > max_items:  # before parsing: that is the cost
        raise APIError(413, f"JSON body has too many items: more than {max_items} (counting its "
                            "',', '[' and '{' characters)")
    try:
        doc = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "Bad request: could not decode json") from None
    except RecursionError:  # nested past the parser's own limit (~1,000 levels)
        raise APIError(400, f"Bad request: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    # counting brackets is one C pass; only a body with enough of them can be too deep
    if isinstance(doc, (dict, list)) and brackets > MAX_JSON_DEPTH \
            and _nested_deeper_than(doc, MAX_JSON_DEPTH):
        raise APIError(400, f"Bad request: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if b"\\u" in raw and _has_lone_surrogate(doc):  # only an escape can make one
        raise APIError(400, "Bad request: the JSON text has an unpaired surrogate (not Unicode)")
    return doc


def credentials(request: bottle.BaseRequest) -> tuple[str, str] | None:
    """devpi's X-Devpi-Auth wins when present, even if garbage; else HTTP Basic.

    Read from the raw environ (latin-1 text as WSGI gives it): bottle's ``get_header``
    decodes as UTF-8 and raises on other bytes, and such a header is only malformed."""
    return credentials_of(request.environ)


def credentials_of(env: dict) -> tuple[str, str] | None:
    """``credentials`` of a WSGI environ (the cached-page fast path has no request object)."""
    devpi = env.get("HTTP_X_DEVPI_AUTH")
    if devpi is not None:
        return parse_devpi_auth(devpi.strip())
    basic = env.get("HTTP_AUTHORIZATION")
    if basic:
        return parse_basic(basic)
    return None


def identity(core, request: bottle.BaseRequest) -> Identity | None:
    """Who is asking, computed once per request and only when a view asks."""
    env = request.environ
    if "devpi.identity" not in env:
        creds = credentials(request)
        env["devpi.identity"] = authenticate(core, request, *creds) if creds else None
    return env["devpi.identity"]


def authenticate(core, request: bottle.BaseRequest, user: str, secret: str) -> Identity | None:
    """Check credentials unless this client or user is guessing too fast (429 then, before
    any password is checked: see login_throttle).

    A name no user can have (see packaging/names.py: at most 100 ASCII characters) fails here, before
    it becomes a throttle key or reaches the database: /+login takes names from a JSON body
    of megabytes, and PostgreSQL refuses a NUL in a query parameter. Such a failure counts
    against the client's address only (there is no user to protect)."""
    addr = core.proxies.client_addr(request.environ)
    if not secret and looks_like_api_token(user):  # devpi-tokens' form: the token as the user name
        user, secret = TOKEN_USER, user
    if user == TOKEN_USER:  # no user to protect: a failure counts against the address only
        return _authenticate_token(core, request.environ, addr, secret)
    key = user if is_user_name(user) else None
    wait = core.throttle.retry_after(key, addr)
    if wait:
        raise APIError(429, f"too many failed logins; try again in {wait} seconds",
                       {"Retry-After": str(wait)})
    env = request.environ
    if key is None:
        core.throttle.failed(None, addr)
        AUTH_FAILURES.inc()
        env[AUTH_FAILED] = "(invalid name)"
        return None
    try:
        ident = core.authenticate(user, secret)
    except AuthUnavailable as e:  # the directory is down: neither a success nor a wrong password
        env[AUTH_FAILED] = user
        raise APIError(503, str(e), {"Retry-After": "30"}) from None
    if ident is None:
        core.throttle.failed(user, addr)
        AUTH_FAILURES.inc()
        env[AUTH_FAILED] = user  # the audit trail records it (http/audit_trail.py)
    else:
        core.throttle.succeeded(user, addr)
        env[AUTH_USER] = ident.user
    return ident


def _authenticate_token(core, env: dict, addr: str, secret: str) -> Identity | None:
    wait = core.throttle.retry_after(None, addr)
    if wait:
        raise APIError(429, f"too many failed logins; try again in {wait} seconds",
                       {"Retry-After": str(wait)})
    ident = core.authenticate(TOKEN_USER, secret) if looks_like_api_token(secret) else None
    if ident is None:
        core.throttle.failed(None, addr)
        AUTH_FAILURES.inc()
        env[AUTH_FAILED] = TOKEN_USER  # the audit trail records it (http/audit_trail.py)
    else:
        env[AUTH_USER] = ident.user
    return ident


def require_identity(core, request: bottle.BaseRequest) -> Identity:
    ident = identity(core, request)
    if ident is None:
        if credentials(request):
            raise APIError(401, "authentication failed: wrong user name, password or token")
        raise APIError(401, "authentication required", {"WWW-Authenticate": 'Basic realm="pypi"'})
    return ident


def here(core, request: bottle.BaseRequest, path: str | None = None) -> str:
    """An absolute URL of this server as the client sees it (``--outside-url`` and its path
    prefix kept), for redirects: ``path`` (default: this request's) percent-encoded."""
    return base_url(core, request) + quote(request.path if path is None else path, safe="/+@:")


def with_project(core, request: bottle.BaseRequest, project: str) -> str:
    """This request's URL with its project segment (the one after user and index) spelled
    ``project``: a plain replace of "/Foo_Bar" hit the user or index when it begins so."""
    parts = request.path.split("/")
    parts[3] = project
    query = f"?{request.query_string}" if request.query_string else ""
    return here(core, request, "/".join(parts)) + query


def base_url(core, request: bottle.BaseRequest) -> str:
    """The server root URL as the client sees it: a trusted proxy's ``X-Outside-Url``, else
    ``--outside-url``, else the scheme (a trusted proxy's ``X-Forwarded-Proto``) and Host.

    Proxy headers from other peers are ignored (see http/trusted_proxies.py), and a Host that is not a
    plain host[:port] is replaced by the listening address."""
    env = request.environ
    trusted = core.proxies.from_proxy(env)
    outside = (trusted and env.get("HTTP_X_OUTSIDE_URL")) or core.config.outside_url
    if outside:
        return outside.rstrip("/")
    scheme = env.get("wsgi.url_scheme", "http")
    if trusted and env.get("HTTP_X_FORWARDED_PROTO", "").lower() in ("http", "https"):
        scheme = env["HTTP_X_FORWARDED_PROTO"].lower()
    host = env.get("HTTP_HOST") or ""
    if not valid_host(host):
        listen = f"[{core.config.host}]" if ":" in core.config.host else core.config.host
        host = f"{listen}:{core.config.port}"
    return f"{scheme}://{host}"


def is_installer(request: bottle.BaseRequest) -> bool:
    return bool(INSTALLER_UA.match(request.get_header("User-Agent") or ""))
