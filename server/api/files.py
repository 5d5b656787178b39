"""Files under /<user>/<index>/+f/: download (with Range), metadata, delete, tox results.

Stored files are immutable and content-addressed, so they get long-lived
caching headers and an ETag equal to their sha256. Bytes are hash-checked
while streaming; a blob that no longer matches is cut off before its last
chunk, so a client never receives a complete wrong file.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any, BinaryIO
from urllib.parse import quote

import bottle

from ..accounts.scope import TOXRESULT
from ..core import Core
from ..repos import nonvolatile
from ..repos.static_view import Ticket, UnsafeName
from ..runtime.metrics import UPLOADS
from ..store import catalog
from ..store.blobstore import BlobCorrupt, BlobStore
from .httpkit import (
    MAX_TOX_REPORT_BYTES,
    APIError,
    identity,
    json_reply,
    read_json,
    require_identity,
    require_index,
)
from .meta import INDEX_SEG, USER_SEG

log = logging.getLogger("devpi.server.files")
IMMUTABLE = "max-age=365000000, immutable, public"
RECHECK_CORRUPT = 30.0  # seconds between looks at a blob found corrupt (see _mended)
SMALL_BODY = 512 * 1024  # a file body up to this size is read at once (see _file_body)


# Archive types by suffix; anything else is application/octet-stream. Never a type a browser
# renders (text/html, image/svg+xml, ...): a file is someone's upload or upstream's bytes,
# and this server's origin must not run what they contain.
# (A wheel stays application/octet-stream, as it always was here.)
_ARCHIVE_TYPES = ((".zip", "application/zip"), (".egg", "application/zip"),
                  (".tar.gz", "application/gzip"), (".tgz", "application/gzip"),
                  (".tar.bz2", "application/x-bzip2"), (".tar.xz", "application/x-xz"),
                  (".tar", "application/x-tar"))


def _content_type(filename: str) -> str:
    lower = filename.lower()
    for suffix, ctype in _ARCHIVE_TYPES:
        if lower.endswith(suffix):
            return ctype
    return "application/octet-stream"


def download_headers(filename: str) -> dict[str, str]:
    """Headers that make any stored file (an upload, a mirrored file, a tox result) a download
    and never a page of this origin: an archive or octet-stream type, no sniffing, a sandbox
    without any resource, and a download disposition (pip and uv ignore it)."""
    ascii_name = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    return {"Content-Type": _content_type(filename), "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"}


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One 'bytes=a-b' range as [start, end); None to send everything (what RFC 9110 says
    to do with a range that is not valid, such as 'bytes=9-0')."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or first == last == "":
        return None
    if first == "":
        n = int(last)
        return (max(size - n, 0), size) if n > 0 else None
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None
    if start >= size:
        raise APIError(416, f"range start {start} beyond file size {size}", {"Content-Range": f"bytes */{size}"})
    return start, min(end, size)


def _guarded(core: Core, sha256: str, start: int, end: int | None) -> Iterator[bytes]:
    try:
        yield from core.blobs.iter_verified(sha256, start, end)
    except BlobCorrupt:
        log.error("blob %s does not match its hash: not serving it", sha256)
        core.config.extra.setdefault("corrupt_blobs", set()).add(sha256)
        raise


class BlobMissing(APIError):
    """A row names a blob that is not in the store (a mirror then downloads it again)."""


def _mended(core: Core, sha256: str) -> bool:
    """Whether a blob found corrupt hashes to its name again (an admin restored it from a
    backup): looked at again at most once per ``RECHECK_CORRUPT`` seconds per blob, so
    requests for a rotten file cannot make the server hash it over and over."""
    checked: dict[str, float] = core.config.extra.setdefault("corrupt_checked", {})
    now = time.monotonic()
    if now - checked.get(sha256, -RECHECK_CORRUPT) < RECHECK_CORRUPT:
        return False
    if len(checked) >= 4096:
        checked.clear()
    checked[sha256] = now
    try:
        for _ in core.blobs.iter_verified(sha256):
            pass
    except (BlobCorrupt, OSError):
        return False
    core.config.extra.get("corrupt_blobs", set()).discard(sha256)
    log.warning("blob %s hashes to its name again (restored?): serving it", sha256)
    return True


def serve_blob(core: Core, sha256: str, filename: str, size: int, mtime: float) -> bottle.HTTPResponse:
    if sha256 in core.config.extra.get("corrupt_blobs", ()):
        if not core.blobs.exists(sha256):  # quarantined since (devpi fsck --repair): a mirror fetches it again
            raise BlobMissing(404, f"no such file: {filename} (blob missing)")
        if not (isinstance(core.blobs, BlobStore) and _mended(core, sha256)):
            raise APIError(500, f"stored file {filename} is corrupt and is not served")
    try:
        f, verified = core.blobs.open_blob(sha256)
    except FileNotFoundError:
        raise BlobMissing(404, f"no such file: {filename} (blob missing)") from None
    except BlobCorrupt:  # an object store's object changed under its name (a local blob is hashed as it is sent)
        log.error("blob %s does not match its hash: not serving it", sha256)
        core.config.extra.setdefault("corrupt_blobs", set()).add(sha256)
        raise APIError(500, f"stored file {filename} is corrupt and is not served") from None
    redirect = getattr(core.blobs, "redirect_url", None)  # an object store's presigned URL (--blob-redirect)
    if redirect is not None and (url := redirect(sha256, filename)):  # the blob is there: checked just now
        f.close()
        return bottle.HTTPResponse(status=302, headers={"Location": url, "Cache-Control": "no-store"})
    if verified:  # hashed moments ago and unchanged since: send it as it is
        return serve_verified_file(f, sha256, filename, size, mtime)
    f.close()
    return _file_reply(sha256, filename, size, mtime, lambda start, end: _guarded(core, sha256, start, end))


def serve_verified_file(f: BinaryIO, sha256: str, filename: str, size: int, mtime: float) -> bottle.HTTPResponse:
    """An open file whose bytes were hashed moments ago (a blob this process checked, or a
    mirror download that just completed): sent as it is, without hashing it all again
    for every byte range. The file is closed here unless the body reads it later."""
    try:
        reply = _file_reply(sha256, filename, size, mtime, lambda start, end: _file_body(f, start, end))
    except BaseException:
        f.close()
        raise
    if reply.body is not f and not isinstance(reply.body, Iterator):  # read already, or not at all
        f.close()
    return reply


def _file_body(f: BinaryIO, start: int, end: int) -> Any:
    """A checked file as a response body.

    Up to ``SMALL_BODY`` bytes are read at once (one ``pread``) and sent as bytes: most
    wheels, and the byte ranges installers read metadata with. Each system call lets
    another thread take the GIL. A larger body is the file itself where the server offers
    ``wsgi.file_wrapper`` (it sends from the file, bounded by Content-Length); devpi's own
    server (server/http/wsgibridge.py) offers none and streams the chunks of ``_read_range``,
    each waiting a bounded time for the client to take it."""
    if end - start <= SMALL_BODY:
        data = os.pread(f.fileno(), end - start, start)
        if len(data) != end - start:
            raise APIError(500, f"stored file ended {end - start - len(data)} bytes early")
        return [data]
    if "wsgi.file_wrapper" in bottle.request.environ:
        f.seek(start)
        return f
    return _read_range(f, start, end)


def _read_range(f: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    try:
        f.seek(start)
        left = end - start
        while left > 0:
            data = f.read(min(256 * 1024, left))
            if not data:
                raise OSError(f"file ended {left} bytes early")
            left -= len(data)
            yield data
    finally:
        f.close()


def _file_reply(sha256: str, filename: str, size: int, mtime: float,
                body: Callable[[int, int], Iterator[bytes]]) -> bottle.HTTPResponse:
    """200, 206 or 304 for a file, with the headers of an immutable, content-addressed one."""
    req = bottle.request
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes",
               "Last-Modified": formatdate(mtime, usegmt=True), **download_headers(filename)}
    inm = req.get_header("If-None-Match")
    if inm and etag in [t.strip() for t in inm.split(",")]:
        return bottle.HTTPResponse(status=304, headers=headers)
    rng = _parse_range(req.get_header("Range"), size)
    if rng and req.get_header("If-Range") not in (None, etag):
        rng = None
    start, end = rng if rng else (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if rng:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return bottle.HTTPResponse(b"" if req.method == "HEAD" else body(start, end), status=status, headers=headers)


def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request


    def get_file(user: str, index: str, path: str):
        ix = require_index(core, user, index)
        relpath = "+f/" + path
        if ix.type == "mirror":
            repo = core.single_repository(ix)
            serve = getattr(repo, "serve_file", None)
            if serve is None:
                raise APIError(404, f"no such file: {relpath}")
            return serve(relpath, req)
        metadata_of = None
        if relpath.endswith(".metadata"):
            metadata_of = relpath[: -len(".metadata")]
        static_ticket = core.static_ticket()
        with core.storage.read() as conn:
            f = catalog.get_file(conn, ix.id, metadata_of or relpath)
            if f is None:
                gone = catalog.was_deleted(conn, ix.id, metadata_of or relpath)
                raise APIError(410 if gone else 404,
                               "file existed, deleted in later serial" if gone else "no such file")
            if (req.get_header("Accept") or "").startswith("application/json"):
                release = _release_of(conn, f)
                return json_reply({"last_modified": formatdate(f.created, usegmt=True),
                                   "hash_spec": f"sha256={f.sha256}", "hashes": {"sha256": f.sha256},
                                   "project": release.metadata.get("name"), "version": release.version,
                                   "size": f.size}, "releasefilemeta")
        if core.fetch_missing_blob is not None and not core.blobs.exists(f.sha256):
            core.fetch_missing_blob(f.sha256, f.size)  # a replica: from its primary, and kept
        if metadata_of:
            if not f.core_metadata_sha256:
                raise APIError(404, "no core metadata for this file")
            data_sha = f.core_metadata_sha256
            _ensure_core_metadata(core, f)
            size = core.blobs.size(data_sha) or 0
            reply = serve_blob(core, data_sha, f.filename + ".metadata", size, f.created)
        else:
            data_sha = f.sha256
            reply = serve_blob(core, f.sha256, f.filename, f.size, f.created)
        if static_ticket is not None and core.static_files_of(ix):
            _materialise(core, ix, relpath, data_sha, static_ticket)
        return reply

    def delete_file(user: str, index: str, path: str):
        ident = require_identity(core, req)
        ix = require_index(core, user, index)
        if not core.may_delete(ident, ix):
            raise APIError(403, f"no permission to delete files on {ix.fullname}")
        nonvolatile.check_delete(core, ident, ix, "file", "force" in req.query)
        relpath = "+f/" + path
        with core.storage.write(ident.user) as tx:
            f = catalog.get_file(tx.conn, ix.id, relpath)
            if f is None:
                gone = catalog.was_deleted(tx.conn, ix.id, relpath)
                raise APIError(410 if gone else 404, "file already deleted" if gone else "no such file")
            release = _release_of(tx.conn, f)
            project = catalog.get_project(tx.conn, ix.id, _project_name_of(tx.conn, release))
            catalog.remove_file(tx, ix, project, f, release.version)
        return json_reply(message=f"package '{ix.fullname}/{relpath}' deleted")

    def post_toxresult(user: str, index: str, path: str):
        ix = require_index(core, user, index)
        if not core.may_upload_toxresult(identity(core, req), ix):
            raise APIError(403, "No permission to upload tox results. You can use the devpi test "
                                "--no-upload option to skip the upload.")
        body = read_json(req, max_bytes=MAX_TOX_REPORT_BYTES)
        if not isinstance(body, dict):
            raise APIError(400, "tox result must be a JSON object")
        relpath = "+f/" + path
        raw = json.dumps(body, sort_keys=True).encode()
        sha256 = core.blobs.put_bytes(raw)
        ident = core.within_scope(identity(core, req), TOXRESULT, ix.fullname)
        stored = store_toxresult(core, ix, relpath, sha256, len(raw), ident.user if ident else None)
        UPLOADS.labels("toxresult").inc()
        return json_reply(f"{ix.fullname}/{stored.relpath}#sha256={sha256}", "toxresultpath")

    base = f"/{USER_SEG}/{INDEX_SEG}/+f/<path:path>"
    app.route(base, "GET", get_file)
    app.route(base, "HEAD", get_file)
    app.route(base, "DELETE", delete_file)
    app.route(base, "POST", post_toxresult)


def _materialise(core: Core, ix: catalog.IndexRow, relpath: str, sha256: str, ticket: Ticket) -> None:
    """Put a public file served just now into the static view (a local blob store's only:
    the view links to the blob), unless a commit came since it was looked up."""
    if not isinstance(core.blobs, BlobStore) or sha256 in core.config.extra.get("corrupt_blobs", ()):
        return
    try:
        core.static.put_file(ix.user, ix.name, relpath, core.blobs.path(sha256), ticket)
    except UnsafeName as e:
        log.info("static view: %s", e)


def _ensure_core_metadata(core: Core, f: catalog.FileRow) -> None:
    """The .metadata blob is stored without fsync (see views_upload): if a crash lost or
    truncated it, take the METADATA out of the wheel again, check its hash, and keep it."""
    sha = f.core_metadata_sha256
    try:
        core.blobs.read_bytes(sha)
        return
    except (OSError, BlobCorrupt):
        pass
    import hashlib
    import zipfile

    from ..packaging.distmeta import MAX_METADATA_BYTES

    try:
        with zipfile.ZipFile(core.blobs.path(f.sha256)) as zf:
            [info] = [i for i in zf.infolist()
                      if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/METADATA")]
            if info.file_size > MAX_METADATA_BYTES:  # a wheel stored before the upload cap
                raise ValueError("METADATA over the limit")
            data = zf.read(info)
    except (OSError, ValueError, zipfile.BadZipFile):
        raise APIError(404, "no core metadata for this file") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise APIError(500, f"core metadata of {f.filename} does not match its recorded hash")
    core.blobs.path(sha).unlink(missing_ok=True)  # a truncated leftover would block the rename
    core.blobs.put_bytes(data, durable=False)
    core.config.extra.get("corrupt_blobs", set()).discard(sha)


def _release_of(conn, f: catalog.FileRow) -> catalog.Release:
    from sqlalchemy import select

    from ..store import schema

    row = conn.execute(select(schema.releases).where(schema.releases.c.id == f.release_id)).first()
    return catalog._release(row)


def _project_name_of(conn, release: catalog.Release) -> str:
    from sqlalchemy import select

    from ..store import schema

    return conn.execute(select(schema.projects.c.name).where(schema.projects.c.id == release.project_id)).scalar()


def store_toxresult(core: Core, ix: catalog.IndexRow, relpath: str, sha256: str, size: int,
                    who: str | None) -> catalog.FileRow:
    """Attach a stored tox report to the release file at relpath (devpi's toxresult link)."""
    from .upload import log_entry

    with core.storage.write(who) as tx:
        f = catalog.get_file(tx.conn, ix.id, relpath)
        if f is None or f.rel != "releasefile":
            raise APIError(404, f"no release file found at {relpath}")
        release = _release_of(tx.conn, f)
        project = catalog.get_project(tx.conn, ix.id, _project_name_of(tx.conn, release))
        existing = [x for x in catalog.files_of_release(tx.conn, release.id)
                    if x.rel == "toxresult" and x.for_file_id == f.id]
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        taken, n = {x.filename for x in existing}, len(existing)
        while f"{f.filename}.toxresult-{stamp}-{n}" in taken:  # one deleted this second
            n += 1
        name = f"{f.filename}.toxresult-{stamp}-{n}"
        dirpath = relpath.rsplit("/", 1)[0]
        return catalog.add_file(tx, ix, release, project, filename=name, sha256=sha256, size=size,
                                rel="toxresult", relpath=f"{dirpath}/{name}", for_file_id=f.id,
                                log=[log_entry("upload", who, ix.fullname)])
