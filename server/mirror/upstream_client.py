"""The mirror's HTTP client: keep-alive connections over the standard library's http.client.

A cold install asks upstream for every page and every file, one request each,
and waits for each. What a request costs on top of the network is therefore
on every installer's critical path: requests spends about a millisecond of CPU
per call here (much of it re-reading the environment for proxy settings),
urllib3 a third of that, and the standard library's http.client, with the
pooling done here, half of urllib3 (more after an idle moment, when a longer
code path has to be paged back in). This module keeps what the mirror needs:

* keep-alive connections per origin, checked before reuse; a GET that fails
  on a reused connection before any answer is retried once on a new one;
* proxies from the environment (``http_proxy``, ``https_proxy``, ``all_proxy``,
  ``no_proxy``, whose entries may also be networks such as ``10.0.0.0/8``),
  decided once per scheme://host:port: plain http goes to the proxy with the
  absolute URL, https through a CONNECT tunnel; credentials in the proxy URL
  (``http://user:pw@proxy:3128``) go along as ``Proxy-Authorization``, on the
  request for plain http and on the CONNECT for https;
* with a ``guard`` (the mirror policy, mirror/policy.py), every address a new
  connection goes to is checked first: the client resolves the host itself and
  connects only to an address the guard allowed, so DNS cannot answer one
  address to a check and another to the connection. Through a proxy, which
  resolves names itself, the addresses the host resolves to here are checked;
* ``via``: sent as ``X-Devpi-Via`` on every request, so a server that finds its
  own mark there knows it is asking itself (a keyed hash, not its uuid: see mirror/via.py);
* credentials in the URL (``user:pw@`` before the host) or in ``~/.netrc``
  sent as Basic auth to that origin only (a redirect elsewhere does not get
  them);
* TLS verified against the system's CA certificates, or the bundle named by
  ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``;
* redirects followed (10 at most), gzip bodies decoded unless the caller asks
  for ``Accept-Encoding: identity`` (files do: their bytes are hash-checked as
  sent, never decoded, whatever ``Content-Encoding`` the answer claims);
* one ``post`` (an external push's upload): through the same guard, never
  redirected nor retried, on a connection of its own;
* ``file://`` URLs, so a mirror can front a local PEP 503 tree: a directory
  answers with its ``index.html``, a missing path is a 404. Only under the
  directory the client was made for (``local_root``), and never as the target
  of a redirect: a page or an upstream must not make the server read its own
  files;
* on Linux, an ACK for every piece of a body read (``TCP_QUICKACK`` before each
  read). On a keep-alive connection the kernel takes request/answer traffic
  for an interactive exchange and delays its ACKs by up to 40 ms, hoping to
  send them along with the next request. A sender that waits for ACKs before
  it sends more (a small send buffer early in a connection, or nginx's
  ``sendfile`` with ``tcp_nopush``) then pauses mid-body: over a local nginx,
  8 of 40 cold rounds of the 25-file benchmark set lost 40 ms on one file
  that way, none with the prompt ACKs (``tests/bench/upstream_reads.py``).
"""
from __future__ import annotations

import base64
import http.client
import ipaddress
import mimetypes
import os
import select
import socket
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from ..runtime.metrics import UPSTREAM_BYTES, UPSTREAM_ERRORS, UPSTREAM_REQUESTS

CHUNK = 64 * 1024
MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)


class TooManyRedirects(Exception):
    pass


class BodyTooLong(Exception):
    """An answer larger or slower than its reader allows."""


@dataclass(frozen=True)
class _Origin:
    """How to reach one scheme://host:port: directly or through a proxy, with which auth."""

    key: str
    scheme: str
    host: str
    port: int
    proxy: tuple[str, int] | None
    auth: str | None  # the Authorization header value
    proxy_auth: str | None = None  # the Proxy-Authorization header value


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class Response:
    """What the mirror reads of an answer: status, headers, final URL, body."""

    def __init__(self, status_code: int, headers: Message, url: str, raw: Any = None,
                 body: bytes | None = None, release: Any = None, sock: Any = None, decode: bool = True,
                 reason: str = ""):
        self.status_code = status_code
        self.reason = reason  # the status line's text ("Not Found"), as the answer gave it
        self.headers = headers  # case-insensitive lookups (email.message.Message)
        self.url = url
        self._raw = raw
        self._sock = sock if _QUICKACK is not None else None  # to ACK each piece at once
        self._body = body
        self._release = release  # returns the connection to its pool, or closes it
        self._decoder = None
        if decode and raw is not None and (headers.get("Content-Encoding") or "").lower() in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def content(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self.iter_content(CHUNK * 4))
        return self._body

    def read_bounded(self, seconds: float, max_bytes: int) -> bytes:
        """The whole body, or BodyTooLong once it takes longer than ``seconds`` or grows past
        ``max_bytes``: the read timeout bounds each read, not an answer that trickles forever."""
        if self._body is None:
            deadline = time.monotonic() + seconds
            parts, size = [], 0
            for data in self.iter_content(CHUNK * 4, partial=True):
                parts.append(data)
                size += len(data)
                if size > max_bytes or time.monotonic() > deadline:
                    self.close()
                    what = f"more than {max_bytes} bytes" if size > max_bytes else f"not complete after {seconds:.0f}s"
                    raise BodyTooLong(f"answer from {_shown(self.url)} {what}")
            self._body = b"".join(parts)
        return self._body

    def iter_content(self, size: int = CHUNK, partial: bool = False) -> Iterator[bytes]:
        """The body in pieces of ``size`` bytes, or with ``partial`` whatever one read
        brings (at most ``size``): a caller watching the clock is not stuck until a slow
        answer has filled a whole piece."""
        if self._body is not None:
            for i in range(0, len(self._body), size):
                yield self._body[i:i + size]
            return
        try:
            while self._raw is not None:
                self._ack_promptly()
                data = self._raw.read1(size) if partial and hasattr(self._raw, "read1") else self._raw.read(size)
                if not data and partial:
                    data = self._raw.read()  # read1 leaves a finished answer open; read closes it
                UPSTREAM_BYTES.inc(len(data))
                if not data:
                    missing = getattr(self._raw, "length", None)
                    if missing:  # the connection ended before Content-Length said it would
                        raise http.client.IncompleteRead(b"", missing)
                    if self._decoder is not None:
                        tail = self._decoder.flush()
                        if tail:
                            yield tail
                    self._done(True)
                    return
                if self._decoder is None:
                    yield data
                    continue
                # at most ``size`` bytes out per step: a megabyte of gzip can hold a gigabyte
                yield self._decoder.decompress(data, size)
                while self._decoder.unconsumed_tail:
                    yield self._decoder.decompress(self._decoder.unconsumed_tail, size)
        except BaseException as e:
            self._done(False)
            if not isinstance(e, GeneratorExit):  # (the reader stopped, not upstream)
                UPSTREAM_ERRORS.inc()
            raise

    def _ack_promptly(self) -> None:
        """Leave the kernel's delayed-ACK mode for the coming read (see the module's docstring).
        It falls back into it by itself, so this is asked again before every read."""
        if self._sock is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:  # not TCP after all (a test's socket pair, say): reads work without it
                self._sock = None

    def _done(self, complete: bool) -> None:
        raw, self._raw = self._raw, None
        if raw is not None and self._release is not None:
            self._release(complete and raw.isclosed())
        elif raw is not None:
            raw.close()

    def close(self) -> None:
        self._done(False)  # left mid-body: that connection cannot serve another request

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


Guard = Callable[[str, int, str], None]  # (host, port, address): raises OSError to refuse it


class UpstreamClient:
    def __init__(self, user_agent: str, maxsize: int = 10, local_root: str | None = None,
                 guard: Guard | None = None, via: str | None = None, netrc: bool = True):
        self.user_agent = user_agent
        self.netrc = netrc  # False: never send the server's own ~/.netrc credentials (a user's push)
        self.local_root = os.path.normpath(local_root) if local_root else None  # file: URLs only below it
        self.guard = guard
        self._headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip"}
        if via:
            self._headers["X-Devpi-Via"] = via
        self.maxsize = maxsize  # idle connections kept per origin
        self._lock = threading.Lock()
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}
        self._ssl: ssl.SSLContext | None = None

    def get(self, url: str, headers: dict[str, str] | None = None, timeout: tuple[float, float] = (5.0, 30.0),
            stream: bool = False, max_seconds: float = 300.0, max_bytes: int = 1 << 30) -> Response:
        """GET url, following redirects. With ``stream`` read the body through
        ``iter_content`` (and close the response); otherwise it is read now, within
        ``max_seconds`` and ``max_bytes`` (else BodyTooLong)."""
        for hop in range(MAX_REDIRECTS + 1):
            if url.startswith("file:"):
                if hop:
                    raise ValueError(f"refusing a redirect to a local file ({_shown(url)})")
                return _file_response(url, self._local_path(url), self.local_root)
            resp = self._request("GET", url, headers or {}, timeout)
            if resp.status_code in REDIRECTS and resp.headers.get("Location"):
                resp.close()
                url = urljoin(url, resp.headers["Location"])
                continue
            if not stream:
                resp.read_bounded(max_seconds, max_bytes)  # all now; the connection goes back to the pool
            return resp
        raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects, last to {_shown(url)}")

    def post(self, url: str, body: bytes, headers: dict[str, str],
             timeout: tuple[float, float] = (5.0, 120.0)) -> Response:
        """POST ``body`` to url once: no redirect is followed (after a POST a 302 or 303
        turns into a GET that could read another service), no retry (it may have been taken),
        and the connection is not kept. The caller reads or closes the answer."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"unsupported URL scheme in {_shown(url)}")
        return self._request("POST", url, headers, timeout, body=body)

    def _local_path(self, url: str) -> Path:
        path = os.path.normpath(unquote(urlsplit(url).path))
        root = self.local_root
        if root is None or (path != root and not path.startswith(root.rstrip("/") + "/")):
            raise ValueError(f"refusing to read {_shown(url)}: outside the mirror's local tree")
        return Path(path)

    # -- one request ------------------------------------------------------------------------
    def _request(self, method: str, url: str, headers: dict[str, str], timeout: tuple[float, float],
                 body: bytes | None = None) -> Response:
        UPSTREAM_REQUESTS.inc()
        try:
            resp = self._send(method, url, headers, timeout, body)
        except BaseException:
            UPSTREAM_ERRORS.inc()
            raise
        if resp.status_code >= 500:
            UPSTREAM_ERRORS.inc()
        return resp

    def _send(self, method: str, url: str, headers: dict[str, str], timeout: tuple[float, float],
              body: bytes | None) -> Response:
        parts = urlsplit(url)
        origin = self._origin(parts)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if origin.proxy is not None and origin.scheme == "http":
            target = f"http://{parts.netloc.rpartition('@')[2]}{target}"  # absolute form, to the proxy
        sent = {**self._headers, **headers}
        if origin.auth and "Authorization" not in headers:  # the caller's own credentials win
            sent["Authorization"] = origin.auth
        if origin.proxy_auth and origin.scheme == "http" and origin.proxy is not None:
            sent["Proxy-Authorization"] = origin.proxy_auth
        fresh_only = method != "GET"  # a POST is sent on a new connection, never repeated
        for attempt in (0, 1):
            conn, reused = self._checkout(origin, timeout, fresh_only)
            try:
                conn.request(method, target, body=body, headers=sent)
                raw = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 0:  # the keep-alive connection went stale: once more, anew
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            # asked for identity (a file): its bytes as sent, whatever encoding the answer claims
            return Response(raw.status, raw.headers, url, raw=raw, sock=conn.sock,
                            release=self._releaser(origin, conn, keep=not fresh_only),
                            decode=sent["Accept-Encoding"].lower() != "identity", reason=str(raw.reason or ""))
        raise AssertionError("unreachable")

    def _releaser(self, origin: _Origin, conn: http.client.HTTPConnection, keep: bool = True) -> Any:
        def release(reusable: bool) -> None:
            if reusable and keep:
                with self._lock:
                    idle = self._idle.setdefault(origin.key, [])
                    if len(idle) < self.maxsize:
                        idle.append(conn)
                        return
            conn.close()

        return release

    def _checkout(self, origin: _Origin, timeout: tuple[float, float],
                  fresh_only: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        while not fresh_only:
            with self._lock:
                idle = self._idle.get(origin.key)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if conn.sock is not None and not _readable(conn.sock):  # closed or sent junk: not reusable
                if conn.sock.gettimeout() != timeout[1]:  # setting it is a system call
                    conn.sock.settimeout(timeout[1])
                return conn, True
            conn.close()
        host, port = origin.proxy or (origin.host, origin.port)
        if origin.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout[0], context=self._ssl_context())
            if origin.proxy is not None:
                tunnel_headers = {"Proxy-Authorization": origin.proxy_auth} if origin.proxy_auth else None
                conn.set_tunnel(origin.host, origin.port, headers=tunnel_headers)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout[0])
        if self.guard is not None:
            if origin.proxy is None:
                conn._create_connection = _guarded_connect(self.guard, origin.host, origin.port)  # type: ignore
            else:  # the proxy connects: what the name resolves to here is all there is to check
                for address in _addresses(origin.host, origin.port):
                    self.guard(origin.host, origin.port, address)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(timeout[1])
        return conn, False

    # -- per origin: proxy, credentials ---------------------------------------------------------
    def _origin(self, parts: Any) -> _Origin:
        key = f"{parts.scheme}://{parts.netloc}"
        origin = self._origins.get(key)
        if origin is None:
            if parts.scheme not in ("http", "https"):
                raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {_shown(key)}")
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if parts.username is not None:
                auth: str | None = _basic(unquote(parts.username), unquote(parts.password or ""))
            else:
                found = _netrc(host) if self.netrc else None
                auth = _basic(*found) if found else None
            proxy, proxy_auth = _proxy_for(parts.scheme, host)
            origin = self._origins[key] = _Origin(key, parts.scheme, host, port, proxy, auth, proxy_auth)
        return origin

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if ca and os.path.isdir(ca):
                self._ssl = ssl.create_default_context(capath=ca)
            else:
                self._ssl = ssl.create_default_context(cafile=ca or None)
        return self._ssl


def _readable(sock: Any) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f"{parts.username}:{parts.password}@", "") if parts.username else url


def _proxy_for(scheme: str, host: str) -> tuple[tuple[str, int] | None, str | None]:
    """The environment's proxy (host, port) for scheme://host and the Proxy-Authorization its
    URL's credentials make, or (None, None) (no proxy set, or no_proxy names the host)."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(host, proxies) or _in_no_proxy_network(host, proxies):
        return None, None
    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    auth = _basic(unquote(parts.username), unquote(parts.password or "")) if parts.username is not None else None
    return (parts.hostname or "", parts.port or 80), auth


def _in_no_proxy_network(host: str, proxies: dict[str, str]) -> bool:
    """no_proxy entries that are networks (``10.0.0.0/8``), as requests and curl read them;
    the standard library matches only names and their suffixes."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    for entry in (proxies.get("no", "") or "").split(","):
        entry = entry.strip()
        if "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _addresses(host: str, port: int) -> list[str]:
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        return []


def _guarded_connect(guard: Guard, host: str, port: int) -> Callable[..., socket.socket]:
    """socket.create_connection that resolves the host once and connects only to the
    addresses ``guard`` allows: the address checked is the address connected to."""

    def connect(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore
                source_address: Any = None) -> socket.socket:
        refused: OSError | None = None
        failed: OSError | None = None
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(address[0], address[1], 0, socket.SOCK_STREAM):
            try:
                guard(host, port, str(sockaddr[0]))
            except OSError as e:
                refused = refused or e
                continue
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as e:
                sock.close()
                failed = e
        raise failed or refused or OSError(f"{host} resolved to no address")

    return connect


def _netrc(host: str) -> tuple[str, str] | None:
    """(login, password) for host from the netrc file ($NETRC or ~/.netrc), if there is one."""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if not host or not os.path.isfile(path):
        return None
    import netrc

    try:
        found = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return (found[0], found[2] or "") if found else None


def _file_response(url: str, path: Path, root: str | None) -> Response:
    """The file, or a 404 when there is none in the tree: a symbolic link (or one on the
    way) that leads out of the tree counts as no file, so the tree's owner cannot be made
    to serve /etc/passwd by a link someone left in it."""
    if path.is_dir():
        path = path / "index.html"
    headers = Message()
    real = os.path.realpath(path)
    real_root = os.path.realpath(root) if root else None
    inside = real_root is not None and (real == real_root or real.startswith(real_root.rstrip("/") + "/"))
    if not inside or not os.path.isfile(real):
        return Response(404, headers, url, body=b"not found\n")
    path = Path(real)
    st = path.stat()
    headers["Content-Length"] = str(st.st_size)
    headers["Last-Modified"] = formatdate(st.st_mtime, usegmt=True)
    ctype = "text/html" if path.suffix == ".html" else mimetypes.guess_type(path.name)[0]
    headers["Content-Type"] = ctype or "application/octet-stream"
    return Response(200, headers, url, raw=_FileBody(path))


class _FileBody:
    """A file read like http.client's response body."""

    def __init__(self, path: Path):
        # the path was resolved just before: a link put in its place meanwhile is not followed
        self._f = os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def isclosed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        self._f.close()
