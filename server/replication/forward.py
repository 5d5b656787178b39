"""A replica forwards writes to its primary and answers once the write has come back to it.

Reads (``GET``, ``HEAD``, ``OPTIONS``) and ``POST /+login`` (which writes nothing: the token
is signed with the replicated secret) are answered here. Every other request goes to the
primary as the client sent it: method, path and query, body (streamed, at most the upload
limit), and the headers the primary's views read (credentials, content type, accept, user
agent). The primary authenticates and authorises the client; the replica adds no rights of
its own: the replica secret is never sent, and no credentials of the server's environment
(``.netrc``) either. The client's address goes along as ``X-Forwarded-For``, which the
primary believes only if it names the replica with ``--trusted-proxy``.

The primary's answer says its serial after the write (``X-Devpi-Serial``); a successful
write (status below 400) is answered when this replica holds that serial, so a client that
writes and then reads here sees its write. That wait is bounded (``--replica-write-wait``); past
it the answer goes out anyway with ``X-Devpi-Replica-Behind: <serial>`` and a log line.

Everything is bounded: connecting, each read of the answer, the body (the server's upload
limit), the answer (:data:`MAX_RESPONSE`), and how many writes are forwarded at once (the
rest get 503 with ``Retry-After``), so forwarded writes never take all of the replica's
threads from its readers. A primary that cannot be reached, or answers 503, gives 503
naming it; any other 5xx of the primary gives 502 (the bug is there, not here).
"""
from __future__ import annotations

import http.cookiejar
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import bottle
import requests
import urllib3

from ..api.errors import APIError, reason_phrase
from ..api.httpkit import JSON_CT, base_url, json_body
from ..http.request_body import BodyReader

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("devpi.server.replication")

READS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_WRITES = frozenset({("POST", "/+login")})
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0  # no byte of the answer for this long (a push may copy many files first)
SERIAL_WAIT = 30.0  # seconds a successful write waits for its serial to arrive here (--replica-write-wait)
MAX_RESPONSE = 16 << 20  # answers to writes are small JSON documents
BODY_SLACK = 1 << 20  # form fields around the largest upload (as the server's own body limit)
CHUNK = 256 << 10
BEHIND_HEADER = "X-Devpi-Replica-Behind"
PRIMARY_HEADER = "X-Devpi-Primary-Url"
# request headers the primary's views read; anything else (the replica secret, proxy
# headers the client wrote, Host, cookies: devpi uses none) stays here
FORWARDED_REQUEST_HEADERS = ("Authorization", "X-Devpi-Auth", "Content-Type", "Content-Encoding", "Accept",
                             "Accept-Language", "User-Agent", "X-Devpi-Via")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade"})
# the primary's framing and protocol headers: this server sets its own (app.DevpiHeaders)
REPLACED = frozenset({"content-length", "content-encoding", "date", "server", "x-devpi-api-version",
                      "x-devpi-server-version", "x-devpi-serial", "x-devpi-uuid", "x-devpi-primary-uuid",
                      "x-devpi-master-uuid", "x-devpi-replica-stale-since", "set-cookie"})


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """One session serves every client: a cookie of one answer must never go out with another."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


class ForwardStats:
    """Counts for the replica's /+status (``replication.writes``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = {"forwarded": 0, "refused_busy": 0, "primary_unreachable": 0, "primary_failed": 0,
                       "behind": 0}
        self.last_failure: str | None = None

    def add(self, key: str, failure: str | None = None) -> None:
        with self._lock:
            self.counts[key] += 1
            if failure is not None:
                self.last_failure = failure

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counts, "last_failure": self.last_failure}


class Forwarder:
    """WSGI middleware of a replica: reads to the application, writes to the primary."""

    def __init__(self, app: Callable, core: Core, primary_url: str, *, max_concurrent: int,
                 serial_wait: float = SERIAL_WAIT, stats: ForwardStats | None = None):
        self.app = app
        self.serial_wait = serial_wait
        self.core = core
        self.primary_url = primary_url.rstrip("/")
        self.stats = stats if stats is not None else ForwardStats()
        self._slots = threading.BoundedSemaphore(max(1, max_concurrent))
        self._session = requests.Session()
        # not trust_env: requests would add the server user's ~/.netrc credentials to an anonymous
        # client's request. The environment's proxy and CA settings are still taken, explicitly.
        self._session.trust_env = False
        self._session.cookies.set_policy(_NoCookies())
        self._proxies = requests.utils.get_environ_proxies(self.primary_url)
        self._verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method in READS or (method, environ.get("PATH_INFO", "")) in LOCAL_WRITES:
            return self.app(environ, start_response)
        try:
            url = self._target(environ)
            if not self._slots.acquire(blocking=False):
                self.stats.add("refused_busy")
                raise APIError(503, "this replica is forwarding as many writes to the primary as it may "
                                    f"at once; try again shortly (or send them to {self.primary_url})",
                               {"Retry-After": "1", PRIMARY_HEADER: self.primary_url})
            try:
                status, headers, body = self._forward(environ, method, url)
            finally:
                self._slots.release()
        except APIError as e:  # ours, and the body reader's (413, 400)
            return _json(start_response, e.status, e.message, e.headers or {})
        start_response(status, headers)
        return [body]

    def _target(self, environ: dict) -> str:
        """The primary's URL for this request: its base, then this path, never another host.

        The path is the decoded one this server routes by (an absolute-URI request line has
        been reduced to it by the HTTP server), quoted again; dot segments are refused (they
        would be resolved away into another resource), and so is the primary's feed."""
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/"):
            raise APIError(400, "the request path must begin with /")
        if any(seg in (".", "..") for seg in path.split("/")):
            raise APIError(400, "the request path has . or .. segments: not forwarded to the primary")
        if path == "/+replica" or path.startswith("/+replica/"):
            raise APIError(404, f"not found: {path[:200]} (a replica has no replication feed)")
        quoted = urllib.parse.quote(path.encode("latin-1", "replace"), safe="/+@:!$&'()*,;=~")
        query = environ.get("QUERY_STRING", "")
        return self.primary_url + quoted + (f"?{query}" if query else "")

    def _headers(self, environ: dict) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in FORWARDED_REQUEST_HEADERS:
            key = name.upper().replace("-", "_")
            value = environ.get(key if key in ("CONTENT_TYPE",) else f"HTTP_{key}")
            if value:
                out[name] = value
        # the client as this server resolved it (a trusted proxy's X-Forwarded-For, else the
        # peer): what the client itself wrote there is not passed on
        out["X-Forwarded-For"] = self.core.proxies.client_addr(environ)
        out["Accept-Encoding"] = "identity"
        return out

    def _forward(self, environ: dict, method: str, url: str) -> tuple[str, list[tuple[str, str]], bytes]:
        limit = self.core.config.max_upload_size + BODY_SLACK
        reader = BodyReader(environ, limit)  # 413 here for a too-large Content-Length, before any contact
        headers = self._headers(environ)
        data: Any = None
        if reader.length:
            data, headers["Content-Length"] = _Body(reader), str(reader.length)
        elif reader.length is None and "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower():
            data = _Body(reader)  # sent chunked; the reader stops it past the limit (413)
        elif method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
        try:
            resp = self._session.request(method, url, data=data, headers=headers, stream=True,
                                         allow_redirects=False, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                         proxies=self._proxies, verify=self._verify)
        except requests.RequestException as e:
            why = f"cannot reach the primary at {self.primary_url}: {type(e).__name__}"
            self.stats.add("primary_unreachable", why)
            log.warning("forwarding %s %s: %s", method, environ.get("PATH_INFO", "")[:200], why)
            raise APIError(503, f"{why}; this replica forwards writes there and cannot take them "
                                f"meanwhile", {"Retry-After": "10", PRIMARY_HEADER: self.primary_url}) from None
        with resp:
            body = self._read(resp, method, environ)
            status = resp.status_code
            if status >= 500:
                self._primary_failed(resp, body)
            serial = _int_header(resp.headers.get("X-Devpi-Serial"))
            out = [(k, self._rewrite(k, v, environ)) for k, v in resp.headers.items() if _passes(k, resp)]
            out.append(("Content-Length", str(len(body))))
            reason = resp.reason or ""
            if isinstance(reason, bytes):
                reason = reason.decode("latin-1")
        self.stats.add("forwarded")
        wait = self.serial_wait
        if status < 400 and serial is not None and not self.core.storage.wait_for_serial(serial, wait):
            here = self.core.storage.current_serial
            self.stats.add("behind", f"serial {serial} of the primary had not arrived after {wait:g} s")
            log.warning("forwarded %s %s: the primary's serial %s had not arrived after %g s (at %s); "
                        "answering anyway", method, environ.get("PATH_INFO", "")[:200], serial, wait, here)
            out.append((BEHIND_HEADER, str(serial)))
        return f"{status} {_clean_reason(reason)}".rstrip(), out, body

    def _read(self, resp: requests.Response, method: str, environ: dict) -> bytes:
        parts, size = [], 0
        try:
            while chunk := resp.raw.read(CHUNK, decode_content=True):
                size += len(chunk)
                if size > MAX_RESPONSE:
                    why = f"the primary at {self.primary_url} sent an answer of more than {MAX_RESPONSE} bytes"
                    self.stats.add("primary_failed", why)
                    raise APIError(502, why, {PRIMARY_HEADER: self.primary_url})
                parts.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            why = f"the connection to the primary at {self.primary_url} broke: {type(e).__name__}"
            self.stats.add("primary_unreachable", why)
            log.warning("forwarding %s %s: %s", method, environ.get("PATH_INFO", "")[:200], why)
            raise APIError(503, f"{why}; the write may or may not have been made there",
                           {"Retry-After": "10", PRIMARY_HEADER: self.primary_url}) from None
        return b"".join(parts)

    def _primary_failed(self, resp: requests.Response, body: bytes) -> None:
        message = _message(body)
        status = resp.status_code
        why = f"the primary at {self.primary_url} answered {status}" + (f": {message}" if message else "")
        self.stats.add("primary_failed", why)
        headers = {PRIMARY_HEADER: self.primary_url}
        if status == 503:
            headers["Retry-After"] = resp.headers.get("Retry-After", "10")[:20]
            raise APIError(503, why, headers)
        raise APIError(502, why, headers)

    def _rewrite(self, name: str, value: str, environ: dict) -> str:
        """A ``Location`` on the primary is given as the same place on this replica."""
        if name.lower() != "location":
            return value
        if value == self.primary_url or value.startswith(self.primary_url + "/") \
                or value.startswith(self.primary_url + "?"):
            return base_url(self.core, bottle.BaseRequest(environ)) + value[len(self.primary_url):]
        return value


class _Body:
    """The client's body, read as the primary takes it; a length makes requests send it as one."""

    def __init__(self, reader: BodyReader):
        self.reader = reader

    def __iter__(self) -> Iterator[bytes]:
        while data := self.reader.read(CHUNK):
            yield data

    def __len__(self) -> int:  # 0 (no length): requests sends it chunked
        return self.reader.length or 0

    def __bool__(self) -> bool:  # requests.Session.request drops a body that is false (``data or {}``)
        return True


def _passes(name: str, resp: requests.Response) -> bool:
    lower = name.lower()
    if lower in HOP_BY_HOP or lower in REPLACED:
        return False
    listed = resp.headers.get("Connection", "")  # headers the primary named as hop-by-hop
    return lower not in {h.strip().lower() for h in listed.split(",")}


def _clean_reason(reason: str) -> str:
    return "".join(c for c in reason if 32 <= ord(c) < 127)[:300]


def _int_header(text: str | None) -> int | None:
    try:
        return int(text) if text is not None and len(text) < 20 else None
    except ValueError:
        return None


def _message(body: bytes) -> str:
    try:
        import json

        doc = json.loads(body[:65536])
        return str(doc.get("message", ""))[:300] if isinstance(doc, dict) else ""
    except ValueError:
        return ""


def _json(start_response: Callable, status: int, message: str, headers: dict[str, str]) -> list[bytes]:
    body = json_body({"message": message})
    start_response(f"{status} {reason_phrase(message)}",
                   [("Content-Type", JSON_CT), ("Content-Length", str(len(body))), *headers.items()])
    return [body]
