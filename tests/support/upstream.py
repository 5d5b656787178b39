"""A small, real, local upstream package index for the mirror tests.

``Upstream`` is a stdlib-only HTTP server (``ThreadingHTTPServer`` in a
background thread) on 127.0.0.1 with an ephemeral port. It serves a simple
repository like PyPI does:

- ``GET /simple/`` the project list, ``GET /simple/<normalized>/`` a project page,
  as PEP 691 JSON (``application/vnd.pypi.simple.v1+json``, api-version 1.1 with
  the PEP 700 keys) or PEP 503 HTML by content negotiation (``Accept`` or
  ``?format=``); a non-normalized name (or a missing trailing slash) is a 301
  to the normalized URL, an unknown project a 404;
- every page carries an ``ETag`` (honours ``If-None-Match`` with 304), a
  ``Last-Modified`` (honours ``If-Modified-Since``) and ``X-PyPI-Last-Serial``;
- files at ``/files/<sha256-prefix>/<filename>`` and PEP 658 core metadata at
  ``<file url>.metadata``.

Everything about it can be changed while it runs: projects and files come and
go (each change bumps ``serial``), and failure switches make it answer with an
error status, slowly, never, with a truncated body, with garbage or with a
wrong hash, globally or only for some *targets*. A target is a project name
(any spelling), a filename, or a URL path prefix starting with ``/``.

Every request is logged (``requests``, ``count()``), so tests can assert how
often the mirror went upstream.

``make_wheel`` and ``make_sdist`` build real, installable distributions in
memory; they are useful for uploads to private indexes too.

Run ``python tests/support/upstream.py --demo`` to look at one in a browser.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import hashlib
import html
import io
import json
import re
import socket
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "JSON_TYPE",
    "HTML_TYPE",
    "RequestRecord",
    "Upstream",
    "UpstreamFile",
    "make_sdist",
    "make_wheel",
    "normalize",
]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
_SUPPORTED_TYPES = (JSON_TYPE, HTML_TYPE, "text/html")

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SDIST_MTIME = 315532800  # 1980-01-01, so that the same inputs give the same bytes


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(name: str) -> str:
    """The name as it appears in wheel / sdist filenames (and the import package)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _version_key(version: str) -> tuple[Any, ...]:
    return tuple(
        (0, int(p), "") if p.isdigit() else (1, 0, p)
        for p in re.split(r"[.\-_+]|(?<=\d)(?=\D)|(?<=\D)(?=\d)", version)
        if p
    )


def _version_from_filename(filename: str) -> str:
    if filename.endswith(".whl"):
        return filename.split("-")[1]
    stem = re.sub(r"(\.tar\.gz|\.tar\.bz2|\.tar\.xz|\.tgz|\.zip|\.tar)$", "", filename)
    return stem.rpartition("-")[2]


# ---------------------------------------------------------------------------
# building distributions


def _metadata(
    project: str,
    version: str,
    requires_dist: Iterable[str],
    requires_python: str | None,
    summary: str | None,
) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {project}", f"Version: {version}"]
    lines.append(f"Summary: {summary if summary is not None else f'{project} {version}, a test package'}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires_dist]
    return ("\n".join(lines) + "\n\n").encode()


def _module_source(project: str, version: str) -> bytes:
    return f'"""{project}: a package served by the test upstream."""\n\n__version__ = "{version}"\n'.encode()


def make_wheel(
    project: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    summary: str | None = None,
    tag: str = "py3-none-any",
    extra_files: dict[str, bytes] | None = None,
) -> tuple[str, bytes, bytes]:
    """Build a pure-python wheel in memory: ``(filename, wheel bytes, METADATA bytes)``.

    It holds an import package named like the project (``foo-bar`` ->
    ``foo_bar``) whose ``__version__`` is *version*, plus *extra_files*
    (archive path -> bytes). The bytes depend on the inputs only.
    """
    dist = _dist_name(project)
    filename = f"{dist}-{version}-{tag}.whl"
    distinfo = f"{dist}-{version}.dist-info"
    metadata = _metadata(project, version, requires_dist, requires_python, summary)
    wheel_info = (
        f"Wheel-Version: 1.0\nGenerator: devpi-tests-upstream\nRoot-Is-Purelib: true\nTag: {tag}\n\n"
    ).encode()
    members: dict[str, bytes] = {f"{dist}/__init__.py": _module_source(project, version)}
    members.update(extra_files or {})
    members[f"{distinfo}/METADATA"] = metadata
    members[f"{distinfo}/WHEEL"] = wheel_info
    record_lines = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"{distinfo}/RECORD,,")
    members[f"{distinfo}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            info = zipfile.ZipInfo(path, date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return filename, buf.getvalue(), metadata


def make_sdist(
    project: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    summary: str | None = None,
) -> tuple[str, bytes, bytes]:
    """Build a setuptools sdist (``.tar.gz``) in memory: ``(filename, bytes, PKG-INFO bytes)``.

    It contains PKG-INFO, a ``pyproject.toml`` with the setuptools backend and
    a ``[project]`` table, and the same import package as ``make_wheel``.
    """
    requires_dist = list(requires_dist)
    dist = _dist_name(project)
    root = f"{dist}-{version}"
    pkg_info = _metadata(project, version, requires_dist, requires_python, summary)
    pyproject = [
        "[build-system]",
        'requires = ["setuptools>=61"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f"name = {json.dumps(project)}",
        f"version = {json.dumps(version)}",
        f"description = {json.dumps(f'{project} {version}, a test package' if summary is None else summary)}",
        f"dependencies = {json.dumps(requires_dist)}",
    ]
    if requires_python:
        pyproject.append(f"requires-python = {json.dumps(requires_python)}")
    pyproject.append("")  # setuptools finds the one flat-layout package by itself
    members = {
        f"{root}/PKG-INFO": pkg_info,
        f"{root}/pyproject.toml": "\n".join(pyproject).encode(),
        f"{root}/{dist}/__init__.py": _module_source(project, version),
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = _SDIST_MTIME
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return f"{root}.tar.gz", compressed.getvalue(), pkg_info


# ---------------------------------------------------------------------------
# state


@dataclass(frozen=True)
class UpstreamFile:
    """One release file as the upstream holds it."""

    project: str  # display name
    filename: str
    version: str
    content: bytes = field(repr=False)
    sha256: str
    path: str  # /files/<prefix>/<filename>
    url: str  # absolute URL of the file
    requires_python: str | None = None
    yanked: str | bool | None = None
    core_metadata: bytes | None = field(default=None, repr=False)
    upload_time: str | None = None

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.core_metadata is None else hashlib.sha256(self.core_metadata).hexdigest()


@dataclass
class _Project:
    name: str
    files: dict[str, UpstreamFile] = field(default_factory=dict)
    mtime: int = 0
    served: bool = False  # a page was served since the last change (see _touch)


@dataclass
class RequestRecord:
    """One request the upstream received."""

    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]
    time: float
    project: str | None = None  # normalized name, for pages and files
    filename: str | None = None  # for files and .metadata
    status: int | None = None  # None while unanswered (or when the connection was dropped)

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive request header lookup."""
        name = name.lower()
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return default


def _accept_choice(accept: str | None) -> str | None:
    """The media type to answer with, or None when nothing acceptable is offered (406)."""
    if not accept or not accept.strip():
        return "text/html"
    offers: list[tuple[float, int, str]] = []
    for pos, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        mtype, q = pieces[0].lower(), 1.0
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        mtype = mtype.replace(".latest+", ".v1+")
        if mtype in ("*/*", "application/*", "text/*"):
            mtype = "text/html" if mtype != "application/*" else JSON_TYPE
        if mtype in _SUPPORTED_TYPES:
            offers.append((-q, pos, mtype))
    return min(offers)[2] if offers else None


def _etag(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return f'"{h.hexdigest()[:32]}"'


def _etag_matches(if_none_match: str, etag: str) -> bool:
    tags = [t.strip() for t in if_none_match.split(",")]
    bare = etag.removeprefix("W/")
    return any(t == "*" or t.removeprefix("W/") == bare for t in tags)


class Upstream:
    """A local simple index on 127.0.0.1; see the module docstring.

    Bound (and its ``url`` known) as soon as it is constructed; answers once
    started. Use as a context manager or call ``start()`` / ``stop()``;
    ``stop()`` then ``start()`` again serves on the same port ("upstream down",
    then back).
    """

    def __init__(self, port: int | None = None, *, absolute_links: bool = False, serve_json: bool = True) -> None:
        if port is None:  # a port from the tests' pool, which a restart on the same port gets back
            from .ports import free_port  # here, not at the top: the module also runs as a script

            port = free_port()
        # shape of the answers
        self.absolute_links = absolute_links  # page links absolute (http://...) instead of relative
        self.serve_json = serve_json  # False: HTML only, whatever is asked (like a static nginx tree)
        self.send_etag = True
        self.cache_control = "max-age=600, public"
        # global failure switches
        self.fail_status: int | None = None  # answer every request with this status
        self.delay: float = 0.0  # seconds before answering anything
        self.hang: bool = False  # accept, read the request, never answer (until cleared or stop())
        self.truncate_files: bool = False  # full Content-Length, half the body, then close
        self.garbage_pages: bool = False  # pages answer 200 with undecodable garbage
        self.garbage_body: bytes = b"\x00\xff<<garbage>> {not: json, not html\x1b\n"
        self.chunk_delay: float = 0.0  # seconds between 64 KiB chunks of a file body (slow transfer)
        # targeted failure switches: keys are project names, filenames or "/path/prefixes"
        self.fail: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        self.hang_targets: set[str] = set()
        self.truncate: set[str] = set()
        self.garbage: set[str] = set()
        self.wrong_hash: set[str] = set()  # pages advertise a wrong sha256 for these files
        self.metadata_hashless: set[str] = set()  # pages say only "has core metadata" (PEP 714 true)
        self.serial: int = 0  # X-PyPI-Last-Serial on every page; bumped by every change

        self._lock = threading.RLock()
        self._projects: dict[str, _Project] = {}
        self._files: dict[str, UpstreamFile] = {}  # by path
        self._list_mtime = 0
        self._list_served = False
        self._log: list[RequestRecord] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._server = self._bind(port)
        self.port: int = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/simple/"

    # -- lifecycle ---------------------------------------------------------

    def _bind(self, port: int) -> _Server:
        server = _Server(("127.0.0.1", port), _Handler)
        server.upstream = self
        return server

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> Upstream:
        """Serve (again, on the same port after ``stop()``)."""
        if self._thread is not None:
            return self
        if self._server is None:
            self._server = self._bind(self.port)
        server = self._server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"upstream:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection (hanging and keep-alive ones too).

        Afterwards connections to the port are refused until ``start()``.
        """
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.halt()
        if thread is not None:
            server.shutdown()
            thread.join()
        server.server_close()

    stop_serving = stop
    resume = start
    close = stop

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Upstream {self.url} {'running' if self.running else 'stopped'} serial={self.serial}>"

    # -- content -----------------------------------------------------------

    def _touch_project(self, proj: _Project) -> None:
        """Record a change: bump the serial and move Last-Modified forward.

        Last-Modified has one-second resolution; if a page was served at the
        current value, the new one is made strictly later so that a client's
        If-Modified-Since can never hide a change.
        """
        self.serial += 1
        now = int(time.time())
        proj.mtime = max(now, proj.mtime + 1) if proj.served else max(now, proj.mtime)
        proj.served = False
        self._list_mtime = max(now, self._list_mtime + 1) if self._list_served else max(now, self._list_mtime)
        self._list_served = False

    def add_file(
        self,
        project: str,
        filename: str,
        content: bytes,
        *,
        requires_python: str | None = None,
        yanked: str | bool | None = None,
        core_metadata: bytes | None = None,
        upload_time: str | None = None,
        version: str | None = None,
    ) -> UpstreamFile:
        """Add (or replace) a file of *project*; ``yanked`` True or a reason string (PEP 592)."""
        sha = hashlib.sha256(content).hexdigest()
        path = f"/files/{sha[:16]}/{filename}"
        if upload_time is None:
            upload_time = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        f = UpstreamFile(
            project=project,
            filename=filename,
            version=version if version is not None else _version_from_filename(filename),
            content=content,
            sha256=sha,
            path=path,
            url=self.base + path,
            requires_python=requires_python,
            yanked=yanked,
            core_metadata=core_metadata,
            upload_time=upload_time,
        )
        with self._lock:
            proj = self._projects.setdefault(normalize(project), _Project(name=project))
            old = proj.files.pop(filename, None)
            if old is not None:
                self._files.pop(old.path, None)
            proj.files[filename] = f
            self._files[path] = f
            self._touch_project(proj)
        return f

    def add_wheel(
        self,
        project: str,
        version: str,
        *,
        requires_dist: Iterable[str] = (),
        requires_python: str | None = None,
        summary: str | None = None,
        tag: str = "py3-none-any",
        extra_files: dict[str, bytes] | None = None,
        metadata: bool = True,
        **kw: Any,
    ) -> UpstreamFile:
        """Add a real pure-python wheel (see ``make_wheel``); its METADATA is served as
        PEP 658 core metadata unless ``metadata=False``. Other keywords go to ``add_file``."""
        filename, content, meta = make_wheel(
            project,
            version,
            requires_dist=requires_dist,
            requires_python=requires_python,
            summary=summary,
            tag=tag,
            extra_files=extra_files,
        )
        if metadata:
            kw.setdefault("core_metadata", meta)
        return self.add_file(
            project, filename, content, requires_python=requires_python, version=version, **kw
        )

    def add_sdist(
        self,
        project: str,
        version: str,
        *,
        requires_dist: Iterable[str] = (),
        requires_python: str | None = None,
        summary: str | None = None,
        **kw: Any,
    ) -> UpstreamFile:
        """Add a real setuptools sdist (see ``make_sdist``). Other keywords go to ``add_file``."""
        filename, content, _ = make_sdist(
            project, version, requires_dist=requires_dist, requires_python=requires_python, summary=summary
        )
        return self.add_file(
            project, filename, content, requires_python=requires_python, version=version, **kw
        )

    def yank(self, filename: str, reason: str | bool = True) -> UpstreamFile:
        """Mark a file yanked (``reason=False`` or None un-yanks it)."""
        with self._lock:
            old = self.get_file(filename)
            f = UpstreamFile(**{**old.__dict__, "yanked": reason or None})
            proj = self._projects[normalize(old.project)]
            proj.files[filename] = f
            self._files[f.path] = f
            self._touch_project(proj)
        return f

    def remove_file(self, filename: str) -> None:
        with self._lock:
            f = self.get_file(filename)
            proj = self._projects[normalize(f.project)]
            del proj.files[filename]
            del self._files[f.path]
            self._touch_project(proj)

    def remove_project(self, project: str) -> None:
        """Forget a project and its files (its page and files become 404s)."""
        with self._lock:
            proj = self._projects.pop(normalize(project))
            for f in proj.files.values():
                self._files.pop(f.path, None)
            self._touch_project(proj)

    def get_file(self, filename: str) -> UpstreamFile:
        with self._lock:
            for proj in self._projects.values():
                if filename in proj.files:
                    return proj.files[filename]
        raise KeyError(filename)

    def files(self, project: str) -> list[UpstreamFile]:
        with self._lock:
            proj = self._projects.get(normalize(project))
            return list(proj.files.values()) if proj else []

    def projects(self) -> list[str]:
        """Display names of all projects."""
        with self._lock:
            return [p.name for p in self._projects.values()]

    def page_url(self, project: str) -> str:
        return f"{self.url}{normalize(project)}/"

    # -- request log -------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request received since the last ``reset_log()``."""
        with self._lock:
            return list(self._log)

    def count(self, what: str | Callable[[RequestRecord], bool] = "/") -> int:
        """Requests whose path starts with *what* (a string) or for which *what* is true."""
        pred = what if callable(what) else (lambda r: r.path.startswith(what))
        return sum(1 for r in self.requests if pred(r))

    def downloads(self, filename: str) -> int:
        """GET requests for the file itself (not its .metadata)."""
        return self.count(
            lambda r: r.method == "GET" and r.filename == filename and not r.path.endswith(".metadata")
        )

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._log.append(rec)

    # -- rendering ---------------------------------------------------------

    def _matches(self, targets: Iterable[str], rec: RequestRecord) -> bool:
        for t in targets:
            if t.startswith("/"):
                if rec.path.startswith(t):
                    return True
            elif t == rec.filename or (rec.project is not None and normalize(t) == rec.project):
                return True
        return False

    def _lookup(self, targets: dict[str, Any], rec: RequestRecord) -> Any:
        for t, value in list(targets.items()):
            if self._matches([t], rec):
                return value
        return None

    def _advertised_sha256(self, f: UpstreamFile) -> str:
        probe = RequestRecord("GET", f.path, "", {}, 0.0, normalize(f.project), f.filename)
        if self._matches(list(self.wrong_hash), probe):
            return hashlib.sha256(f.content + b"<wrong>").hexdigest()
        return f.sha256

    def _href(self, f: UpstreamFile) -> str:
        # pages live at /simple/<name>/, files at /files/...
        return f.url if self.absolute_links else "../.." + f.path

    def render_list(self, media_type: str) -> bytes:
        with self._lock:
            names = sorted((p.name for p in self._projects.values()), key=normalize)
        if media_type == JSON_TYPE:
            doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
            return json.dumps(doc, indent=1).encode()
        links = []
        for n in names:
            href = self.page_url(n) if self.absolute_links else normalize(n) + "/"
            links.append(f'    <a href="{html.escape(href)}">{html.escape(n)}</a><br />')
        return _html_page("Simple index", links)

    def render_project(self, project: str, media_type: str) -> bytes | None:
        with self._lock:
            proj = self._projects.get(normalize(project))
            if proj is None:
                return None
            files = list(proj.files.values())
        versions = sorted({f.version for f in files}, key=_version_key)
        if media_type == JSON_TYPE:
            entries = []
            for f in files:
                entry: dict[str, Any] = {
                    "filename": f.filename,
                    "url": self._href(f),
                    "hashes": {"sha256": self._advertised_sha256(f)},
                }
                if f.requires_python is not None:
                    entry["requires-python"] = f.requires_python
                if f.yanked:
                    entry["yanked"] = f.yanked
                if f.core_metadata is not None:
                    meta: Any = True if f.filename in self.metadata_hashless else {"sha256": f.metadata_sha256}
                    entry["core-metadata"] = entry["dist-info-metadata"] = meta
                entry["size"] = f.size
                if f.upload_time is not None:
                    entry["upload-time"] = f.upload_time
                entries.append(entry)
            doc = {
                "meta": {"api-version": "1.1"},
                "name": normalize(project),
                "versions": versions,
                "files": entries,
            }
            return json.dumps(doc, indent=1).encode()
        links = []
        for f in files:
            attrs = [f'href="{html.escape(self._href(f))}#sha256={self._advertised_sha256(f)}"']
            if f.requires_python is not None:
                attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
            if f.yanked:
                reason = "" if f.yanked is True else str(f.yanked)
                attrs.append(f'data-yanked="{html.escape(reason)}"')
            if f.core_metadata is not None:
                meta = "true" if f.filename in self.metadata_hashless else f"sha256={f.metadata_sha256}"
                attrs.append(f'data-core-metadata="{meta}" data-dist-info-metadata="{meta}"')
            links.append(f"    <a {' '.join(attrs)}>{html.escape(f.filename)}</a><br />")
        return _html_page(f"Links for {normalize(project)}", links)


def _html_page(title: str, links: list[str]) -> bytes:
    t = html.escape(title)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.1">\n'
        f"    <title>{t}</title>\n  </head>\n  <body>\n    <h1>{t}</h1>\n"
        + "".join(line + "\n" for line in links)
        + "  </body>\n</html>\n"
    ).encode()


# ---------------------------------------------------------------------------
# HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    upstream: Upstream

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.halted = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args, **kw)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError | ValueError):
            return  # a connection cut by stop(), truncation or the client: expected here
        super().handle_error(request, client_address)

    def register(self, conn: socket.socket) -> bool:
        with self._conns_lock:
            if self.halted.is_set():
                return False
            self._conns.add(conn)
            return True

    def unregister(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.discard(conn)

    def halt(self) -> None:
        """Release hanging handlers and cut every open connection."""
        with self._conns_lock:
            self.halted.set()
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like PyPI
    server_version = "devpi-test-upstream/1.0"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        if not self.server.register(self.connection):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read the request log instead of stderr

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_POST(self) -> None:
        self._handle(head=False)

    do_PUT = do_DELETE = do_PATCH = do_POST

    # -- plumbing ----------------------------------------------------------

    _rec: RequestRecord | None = None

    def send_response(self, code: int, message: str | None = None) -> None:
        if self._rec is not None:
            self._rec.status = code
        super().send_response(code, message)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if content_type and status != 304:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self._head and status != 304:
            self.wfile.write(body)

    def _wait(self, seconds: float) -> bool:
        """Sleep, unless the server stops; False if it stopped."""
        return not self.server.halted.wait(seconds) if seconds > 0 else not self.server.halted.is_set()

    # -- dispatch ----------------------------------------------------------

    def _handle(self, head: bool) -> None:
        try:
            self._dispatch(head)
        finally:
            self._rec = None

    def _dispatch(self, head: bool) -> None:
        up = self.server.upstream
        self._head = head
        split = urlsplit(self.path)
        rec = self._rec = RequestRecord(
            method=self.command,
            path=split.path,
            query=split.query,
            headers=dict(self.headers.items()),
            time=time.time(),
        )
        if self.headers.get("Content-Length"):
            self.rfile.read(int(self.headers["Content-Length"]))
        route, arg = self._route(up, split.path, rec)
        up._record(rec)

        # failure switches, in the order a real outage would show them
        while (up.hang or up._matches(list(up.hang_targets), rec)) and self._wait(0.02):
            pass
        if self.server.halted.is_set():
            self.close_connection = True
            return
        delay = up.delay + (up._lookup(up.delays, rec) or 0.0)
        if not self._wait(delay):
            self.close_connection = True
            return
        status = up.fail_status or up._lookup(up.fail, rec)
        if status:
            self._send(status, f"upstream test failure {status}\n".encode(), headers={"Retry-After": "1"})
            return
        if self.command not in ("GET", "HEAD"):
            self._send(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
            return
        route(up, arg, split.query)

    def _route(self, up: Upstream, path: str, rec: RequestRecord) -> tuple[Callable[..., None], str]:
        if path in ("/simple", "/"):
            return self._redirect, "/simple/"
        if path == "/simple/":
            return self._list, ""
        m = re.fullmatch(r"/simple/([^/]+)(/?)", path)
        if m:
            name, slash = m.groups()
            rec.project = normalize(name)
            if name != rec.project or not slash:
                return self._redirect, f"/simple/{rec.project}/"
            return self._project, name
        if path.startswith("/files/"):
            is_meta = path.endswith(".metadata")
            with up._lock:
                f = up._files.get(path.removesuffix(".metadata") if is_meta else path)
            if f is not None:
                rec.project, rec.filename = normalize(f.project), f.filename
                if is_meta:
                    return self._metadata, path.removesuffix(".metadata")
                return self._file, path
        return self._not_found, path

    # -- answers -----------------------------------------------------------

    def _not_found(self, up: Upstream, path: str, query: str) -> None:
        self._send(404, b"404 Not Found\n")

    def _redirect(self, up: Upstream, location: str, query: str) -> None:
        if query:
            location += "?" + query
        self._send(301, b"", headers={"Location": location})

    def _negotiate(self, up: Upstream, query: str) -> str | None:
        fmt = parse_qs(query).get("format")
        choice = _accept_choice(fmt[0] if fmt else self.headers.get("Accept"))
        if choice == JSON_TYPE and not up.serve_json:
            return "text/html"
        return choice

    def _page(self, up: Upstream, body: bytes | None, media_type: str, proj: _Project | None) -> None:
        rec = self._rec
        assert rec is not None
        garbage = up.garbage_pages or up._matches(list(up.garbage), rec)
        if garbage:
            body = up.garbage_body
        assert body is not None
        with up._lock:
            mtime = proj.mtime if proj is not None else up._list_mtime
        headers = {
            "X-PyPI-Last-Serial": str(up.serial),
            "Vary": "Accept, Accept-Encoding",
            "Cache-Control": up.cache_control,
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        }
        etag = _etag(media_type.encode(), body)
        if up.send_etag:
            headers["ETag"] = etag
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        not_modified = False
        if inm is not None:
            not_modified = up.send_etag and _etag_matches(inm, etag)
        elif ims is not None:
            try:
                not_modified = mtime <= email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                not_modified = False
        if not_modified and not garbage:
            self._send(304, headers=headers)
            return
        with up._lock:
            if proj is not None:
                proj.served = True
            else:
                up._list_served = True
        ctype = media_type if media_type == JSON_TYPE else f"{media_type}; charset=utf-8"
        self._send(200, body, ctype, headers)

    def _list(self, up: Upstream, arg: str, query: str) -> None:
        media_type = self._negotiate(up, query)
        if media_type is None:
            self._send(406, b"406 Not Acceptable\n")
            return
        self._page(up, up.render_list(media_type), media_type, None)

    def _project(self, up: Upstream, name: str, query: str) -> None:
        media_type = self._negotiate(up, query)
        if media_type is None:
            self._send(406, b"406 Not Acceptable\n")
            return
        body = up.render_project(name, media_type)
        with up._lock:
            proj = up._projects.get(normalize(name))
        if body is None or proj is None:
            self._send(404, b"404 Not Found\n")
            return
        self._page(up, body, media_type, proj)

    def _metadata(self, up: Upstream, path: str, query: str) -> None:
        with up._lock:
            f = up._files.get(path)
        if f is None or f.core_metadata is None:
            self._send(404, b"404 Not Found\n")
            return
        self._send(200, f.core_metadata, "application/octet-stream", {"ETag": _etag(f.core_metadata)})

    def _file(self, up: Upstream, path: str, query: str) -> None:
        with up._lock:
            f = up._files.get(path)
        if f is None:
            self._send(404, b"404 Not Found\n")
            return
        etag = f'"{f.sha256[:32]}"'
        headers = {"ETag": etag, "Cache-Control": "max-age=365000000, immutable, public"}
        inm = self.headers.get("If-None-Match")
        if inm is not None and _etag_matches(inm, etag):
            self._send(304, headers=headers)
            return
        assert self._rec is not None
        truncated = up.truncate_files or up._matches(list(up.truncate), self._rec)
        body = f.content[: len(f.content) // 2] if truncated else f.content
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(f.content)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self._head:
            return
        chunk = 65536
        for start in range(0, len(body), chunk):
            if start and not self._wait(up.chunk_delay):
                break
            self.wfile.write(body[start : start + chunk])
        if truncated:
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ---------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve a local test upstream index on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--demo", action="store_true", help="add a few demo projects")
    parser.add_argument("--absolute-links", action="store_true")
    args = parser.parse_args(argv)
    up = Upstream(args.port, absolute_links=args.absolute_links)
    if args.demo:
        up.add_wheel("demo-lib", "1.0")
        up.add_wheel("demo-lib", "2.0", requires_python=">=3.8")
        up.add_sdist("demo-lib", "2.0")
        up.add_wheel("Demo_App", "0.1", requires_dist=["demo-lib>=2"])
        up.add_wheel("demo-app", "0.2", requires_dist=["demo-lib>=2"], yanked="broken")
    with up:
        print(f"serving {up.url}  (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
