"""The mirror's HTTP client: urllib3 pools, with the environment read once per origin.

A cold install asks upstream for every page and every file, one request each,
so what a request costs on top of the network matters: requests spends about
a millisecond of CPU per call here (most of it re-reading the environment for
proxy settings), urllib3 under it less than half of that. This module keeps
what requests gave the mirror and drops the rest:

* proxies from the environment (``http_proxy``, ``https_proxy``, ``no_proxy``)
  and ``~/.netrc`` credentials, decided once per scheme://host:port;
* credentials in the URL (``https://user:pw@host/simple/``) sent as Basic auth
  (urllib3 drops the header when a redirect leaves the host);
* the CA bundle named by ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (what
  people behind an intercepting proxy already set), else the system's;
* ``file://`` URLs, so a mirror can front a local PEP 503 tree: a directory
  answers with its ``index.html``, a missing path is a 404.

Redirects are followed; nothing is retried (the mirror decides what a failure
means). Bodies are decoded (gzip) unless the caller asks for identity.
"""
from __future__ import annotations

import mimetypes
import os
import threading
import urllib.request
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import urllib3

CHUNK = 64 * 1024


class Response:
    """What the mirror reads of an answer: status, headers, final URL, body."""

    def __init__(self, status_code: int, headers: Any, url: str, raw: Any = None, body: bytes | None = None):
        self.status_code = status_code
        self.headers = headers  # case-insensitive (urllib3's HTTPHeaderDict)
        self.url = url
        self._raw = raw
        self._body = body

    @property
    def content(self) -> bytes:
        if self._body is None:
            try:
                self._body = self._raw.read() if self._raw is not None else b""
            finally:
                self.close()
        return self._body

    def iter_content(self, size: int = CHUNK) -> Iterator[bytes]:
        if self._body is not None:
            for i in range(0, len(self._body), size):
                yield self._body[i:i + size]
            return
        while True:
            data = self._raw.read(size)
            if not data:
                return
            yield data

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            if not raw.isclosed():  # left mid-body: that connection cannot serve another request
                raw.close()
            raw.release_conn()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class UpstreamClient:
    def __init__(self, user_agent: str, maxsize: int = 10):
        self.user_agent = user_agent
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._origins: dict[str, tuple[Any, dict[str, str]]] = {}
        self._managers: dict[str | None, Any] = {}
        self._retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=10,
                                      raise_on_redirect=True)

    def get(self, url: str, headers: dict[str, str] | None = None, timeout: tuple[float, float] = (5.0, 30.0),
            stream: bool = False) -> Response:
        """GET url. With ``stream`` the body is read through ``iter_content`` (then close it)."""
        if url.startswith("file:"):
            return _file_response(url)
        manager, extra = self._for_origin(url)
        sent = {"User-Agent": self.user_agent, "Accept-Encoding": "gzip", **extra, **(headers or {})}
        raw = manager.urlopen("GET", url, headers=sent, retries=self._retries, preload_content=False,
                              decode_content=True, timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))
        resp = Response(raw.status, raw.headers, urljoin(url, raw.url or ""), raw=raw)  # final URL
        if not stream:
            resp.content  # noqa: B018  (read it all now; the connection goes back to the pool)
        return resp

    # -- per origin: which pool (direct or through a proxy), which auth header -------------------
    def _for_origin(self, url: str) -> tuple[Any, dict[str, str]]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self._origins.get(origin)
        if found is None:
            proxy = _proxy_for(parts.scheme, parts.hostname or "")
            extra: dict[str, str] = {}
            if parts.username is not None:
                extra = urllib3.util.make_headers(
                    basic_auth=f"{unquote(parts.username)}:{unquote(parts.password or '')}")
            else:
                netrc_auth = _netrc_auth(parts.hostname or "")
                if netrc_auth:
                    extra = urllib3.util.make_headers(basic_auth=netrc_auth)
            found = self._origins[origin] = (self._manager(proxy), extra)
        return found

    def _manager(self, proxy: str | None) -> Any:
        with self._lock:
            manager = self._managers.get(proxy)
            if manager is None:
                kw: dict[str, Any] = {"maxsize": self.maxsize, "block": False}
                ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                if ca:
                    kw["ca_certs" if os.path.isfile(ca) else "ca_cert_dir"] = ca
                manager = urllib3.ProxyManager(proxy, **kw) if proxy else urllib3.PoolManager(num_pools=8, **kw)
                self._managers[proxy] = manager
        return manager

    def close(self) -> None:
        with self._lock:
            for manager in self._managers.values():
                manager.clear()


def _proxy_for(scheme: str, host: str) -> str | None:
    """The environment's proxy for scheme://host, or None (no proxy set, or no_proxy says so)."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _netrc_auth(host: str) -> str | None:
    """'login:password' for host from the netrc file ($NETRC or ~/.netrc), if there is one."""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if not host or not os.path.isfile(path):
        return None
    import netrc

    try:
        found = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return f"{found[0]}:{found[2]}" if found else None


def _file_response(url: str) -> Response:
    path = Path(unquote(urlsplit(url).path))
    if path.is_dir():
        path = path / "index.html"
    headers = urllib3.HTTPHeaderDict()
    if not path.is_file():
        return Response(404, headers, url, body=b"not found\n")
    st = path.stat()
    headers["Content-Length"] = str(st.st_size)
    headers["Last-Modified"] = formatdate(st.st_mtime, usegmt=True)
    ctype = "text/html" if path.suffix == ".html" else mimetypes.guess_type(path.name)[0]
    headers["Content-Type"] = ctype or "application/octet-stream"
    return Response(200, headers, url, raw=_FileBody(path))


class _FileBody:
    """A file read like urllib3's response body."""

    def __init__(self, path: Path):
        self._f = open(path, "rb")

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def isclosed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        self._f.close()

    def release_conn(self) -> None:
        self._f.close()
