"""The legacy upload API (twine, devpi upload, setup.py upload): POST /<user>/<index>/.

Order of work, so that nothing half-done is ever visible: check the size and
permissions from the headers alone, then parse the form as it arrives
(``uploadform``), its file going straight into a blob writer while it is hashed,
open the archive to read its metadata through the caps of ``distmeta`` (which also
proves it is complete), fsync the blob into the store, and only then commit the
rows that name it.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bottle

from ..core import Core
from ..http.request_body import declared_length, require_length_or_chunked
from ..packaging.distmeta import (
    MAX_UNPACKED,
    BadDistribution,
    TooLarge,
    check_metadata_sizes,
    clean_metadata,
    empty_metadata,
    read_distribution,
)
from ..packaging.doc_zips import BadDocZip, DocLimits, check_doc_zip
from ..packaging.names import (
    InvalidName,
    check_filename,
    check_project_name,
    check_version,
    filename_matches,
    normalize_name,
)
from ..repos import nonvolatile
from ..runtime.metrics import UPLOAD_BYTES, UPLOADS
from ..store import catalog
from ..store.blobstore import BlobWriter
from .httpkit import APIError, credentials, identity, require_index
from .uploadform import Form, UploadedFile, read_form

MAX_FILENAME = 240  # characters of an uploaded file's name (doc/server.md "Upload limits")


class Unchanged(Exception):
    """The upload repeats what is stored: roll back, answer 200, take no serial."""


def log_entry(what: str, who: str | None, dst: str, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"what": what, "who": who, "when": list(now.timetuple()[:6]), "dst": dst, **extra}


def ok_reply() -> bottle.HTTPResponse:
    resp = bottle.HTTPResponse(b"", status=200)
    resp.content_type = "text/plain"
    return resp


def ok_with_reason(reason: str) -> bottle.HTTPResponse:
    resp = ok_reply()
    resp.status = f"200 {reason}"
    return resp


def handle_upload(core: Core, user: str, index: str) -> bottle.HTTPResponse:
    req = bottle.request
    limit = core.config.max_upload_size
    require_length_or_chunked(req.environ)  # and within the limit: from the headers, before any body
    length = declared_length(req.environ)
    if length is not None and length > limit:
        raise APIError(413, f"upload too large: {length} bytes, limit is {limit} bytes")
    ix = require_index(core, user, index)
    if ix.type == "mirror":
        raise APIError(404, "cannot submit to mirror index")
    ident = identity(core, req)
    if not core.may_upload(ident, ix):  # acl_upload may allow :ANONYMOUS:
        if ident is None and credentials(req):  # sent, and wrong: say so (doc/api.md), not "required"
            raise APIError(401, "authentication failed: wrong user name, password or token",
                           {"WWW-Authenticate": 'Basic realm="pypi"'})
        if ident is None:
            raise APIError(401, "authentication required to upload", {"WWW-Authenticate": 'Basic realm="pypi"'})
        raise APIError(403, f"no permission to submit to {ix.fullname}")
    who = ident.user if ident else None
    form, content = read_form(req.environ, limit, lambda _name, sent: core.blobs.writer(md5=_wants_md5(sent)),
                              _check_upload_name)
    try:
        reply = _dispatch(core, who, ix, form, content)
        UPLOADS.labels(_UPLOAD_KINDS.get(form.get(":action"), "other")).inc()
        if content is not None:
            UPLOAD_BYTES.inc(content.writer.size)
        return reply
    finally:
        if content is not None:
            content.writer.discard()  # unless committed: then this does nothing


_UPLOAD_KINDS = {"submit": "register", "file_upload": "file", "doc_upload": "doc"}


def _check_upload_name(filename: str) -> None:
    """Refused before a byte of the file is stored."""
    if len(filename) > MAX_FILENAME:
        raise APIError(400, f"file name too long: {len(filename)} characters, the limit is {MAX_FILENAME}")
    try:
        check_filename(filename)
    except InvalidName as e:
        raise APIError(400, str(e)) from None


def _dispatch(core: Core, who: str | None, ix: catalog.IndexRow, forms: Form,
              content: UploadedFile | None) -> bottle.HTTPResponse:
    action = forms.get(":action")
    if not action:
        raise APIError(400, ":action field not found")
    name = _form_str(forms, "name")
    version = _form_str(forms, "version")
    if action == "submit":
        return _register(core, who, ix, name, version, forms)
    if content is None:
        raise APIError(400, "content file field not found")
    filename = content.raw_filename
    try:
        check_project_name(name)
    except InvalidName as e:
        raise APIError(400, str(e)) from None
    if action == "file_upload":
        return _file_upload(core, who, ix, name, version, forms, content.writer, filename)
    if action == "doc_upload":
        return _doc_upload(core, who, ix, name, version, content.writer)
    raise APIError(400, f"unknown :action {action!r}")


def _form_str(forms: Any, key: str) -> str:
    value = forms.getunicode(key) if hasattr(forms, "getunicode") else forms.get(key)
    return (value or "").strip()


def _form_metadata(forms: Any) -> dict[str, Any]:
    from ..packaging.distmeta import LIST_KEYS, METADATA_KEYS

    values: dict[str, Any] = {}
    for key in METADATA_KEYS:
        if key in LIST_KEYS:
            got = forms.getall(key)
            if got:
                values[key] = got
        elif key in forms:
            values[key] = forms.getunicode(key) or ""
    md = clean_metadata(values)
    try:
        check_metadata_sizes(md, "form")
    except TooLarge as e:
        raise APIError(413, str(e)) from None
    except BadDistribution as e:
        raise APIError(400, str(e)) from None
    return md


def _wants_md5(sent: Form) -> bool:
    """md5 costs four times what sha256 does (0.5 s for 100 MB): it is computed only to check
    an ``md5_digest`` sent without a ``sha256_digest`` (a matching sha256 already proves the
    bytes are the ones the client hashed)."""
    return "md5_digest" in sent and "sha256_digest" not in sent


def _check_digests(forms: Any, writer: BlobWriter) -> None:
    sent_sha256 = (forms.get("sha256_digest") or "").strip().lower()
    sent_md5 = (forms.get("md5_digest") or "").strip().lower()
    if sent_sha256:
        checks = [("sha256_digest", sent_sha256, writer.sha256)]
    elif sent_md5:
        checks = [("md5_digest", sent_md5, writer.md5 if writer.has_md5 else _md5_of(writer.tmp_path))]
    else:
        checks = []
    for field, sent, actual in checks:
        if sent != actual:
            raise APIError(400, f"{field} mismatch: sent {sent}, content has {actual}")


def _md5_of(path: Any) -> str:
    """For an md5_digest sent after the file (no client does): one more read, from the page cache."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _same_version(a: str, b: str) -> bool:
    """Equal under PEP 440; False when either is no valid version at all."""
    try:
        return check_version(a) == check_version(b)
    except InvalidName:
        return False


def _file_upload(core: Core, who: str | None, ix: catalog.IndexRow, name: str, version: str, forms: Any,
                 writer: BlobWriter, filename: str) -> bottle.HTTPResponse:
    try:
        check_version(version)
        filename_matches(filename, name, version)
    except InvalidName as e:
        raise APIError(400, str(e)) from None
    with writer:
        if writer.size == 0:
            raise APIError(400, f"{filename}: empty file")
        _check_digests(forms, writer)
        try:
            info = read_distribution(writer.tmp_path, filename, max(MAX_UNPACKED, 4 * core.config.max_upload_size))
        except TooLarge as e:
            raise APIError(413, str(e)) from None
        except BadDistribution as e:
            raise APIError(400, str(e)) from None
        md = info.metadata or _form_metadata(forms)
        if md.get("name") and normalize_name(md["name"]) != normalize_name(name):
            raise APIError(400, f"{filename}: metadata names project {md['name']!r}, form says {name!r}")
        if md.get("version") and md["version"] != version and not _same_version(md["version"], version):
            raise APIError(400, f"{filename}: metadata has version {md['version']!r}, form says {version!r}")
        sha256 = writer.sha256
        size = writer.size
        writer.commit()  # fsynced and in place before any row names it
    # The PEP 658 copy of the wheel's METADATA needs no fsync of its own: if a crash loses
    # it, views_files extracts it from the (durable) wheel again.
    core_sha = core.blobs.put_bytes(info.core_metadata, durable=False) if info.core_metadata else None
    md = {**md, "name": name, "version": version}
    project_name = normalize_name(name)
    try:
        with core.storage.write(who) as tx:
            ix = catalog.get_index(tx.conn, ix.user, ix.name)
            if ix is None:
                raise APIError(404, "index was deleted during the upload")
            project = catalog.ensure_project(tx, ix, project_name, name)
            release = catalog.get_release(tx.conn, project.id, version)
            if release is not None:  # maybe "4.0" for "4.0.0": the stored spelling stays
                version = release.version
                md["version"] = version
            log = [log_entry("upload", who, ix.fullname)]
            existing = catalog.files_by_filename(tx.conn, release.id, filename, "releasefile") if release else []
            nonvolatile.check_file_unchanged(core, tx.conn, who, ix, filename, sha256, existing)
            for old in existing:
                if old.sha256 == sha256:
                    raise Unchanged()
                count = sum(entry.get("count", 0) for entry in old.log if entry.get("what") == "overwrite")
                log = [log_entry("overwrite", who, ix.fullname, count=count + 1)] + log
                catalog.remove_file_row_only(tx, ix, project, old, version)
            if release is None:
                release = catalog.put_release(tx, ix, project, version, {**empty_metadata(name, version), **md})
            else:
                # A second file of a release (sdist after wheel) may carry less metadata:
                # it adds what it has and never blanks what the first one said.
                release = catalog.put_release(tx, ix, project, version, nonvolatile.metadata_additions(
                    ix, release.metadata, {k: v for k, v in md.items() if v not in ("", [], None)}))
            catalog.add_file(tx, ix, release, project, filename=filename, sha256=sha256, size=size,
                             core_metadata_sha256=core_sha, log=log)
    except Unchanged:
        return ok_with_reason("Upload of identical file to non volatile index."
                              if not ix.config.get("volatile", True) else "Upload of identical file.")
    return ok_reply()


def _register(core: Core, who: str | None, ix: catalog.IndexRow, name: str, version: str,
              forms: Any) -> bottle.HTTPResponse:
    try:
        check_project_name(name)
        check_version(version)
    except InvalidName as e:
        raise APIError(400, str(e)) from None
    md = {**_form_metadata(forms), "name": name, "version": version}
    with core.storage.write(who) as tx:
        project = catalog.ensure_project(tx, ix, normalize_name(name), name)
        release = catalog.get_release(tx.conn, project.id, version)
        if release is None:
            catalog.put_release(tx, ix, project, version, {**empty_metadata(name, version), **md})
        else:
            nonvolatile.check_metadata_unchanged(ix, release.metadata, md, name, version)
            catalog.put_release(tx, ix, project, version, nonvolatile.metadata_additions(ix, release.metadata, md))
    return ok_reply()


def _doc_upload(core: Core, who: str | None, ix: catalog.IndexRow, name: str, version: str,
                writer: BlobWriter) -> bottle.HTTPResponse:
    project_name = normalize_name(name)
    if version:
        try:
            check_version(version)
        except InvalidName as e:
            raise APIError(400, str(e)) from None
    with writer:
        if not version:  # as the original, this is said before anything about the zip itself
            with core.storage.read() as conn:
                project = catalog.get_project(conn, ix.id, project_name)
                if project is None or not catalog.release_versions(conn, project.id):
                    raise APIError(400, f"doczip has no version and {project_name!r} has no releases to "
                                        "derive one from")
        try:
            check_doc_zip(writer.tmp_path, DocLimits.from_config(core.config.extra))
        except BadDocZip as e:
            raise APIError(400, f"documentation zip refused: {e}") from None
        sha256, size = writer.sha256, writer.size
        writer.commit()
    try:
        _store_doczip(core, who, ix, name, project_name, version, sha256, size)
    except Unchanged:
        pass
    return ok_reply()


def _store_doczip(core: Core, who: str | None, ix: catalog.IndexRow, name: str, project_name: str, version: str,
                  sha256: str, size: int) -> None:
    with core.storage.write(who) as tx:
        project = catalog.ensure_project(tx, ix, project_name, name)
        if not version:
            from ..packaging.names import version_key

            versions = catalog.release_versions(tx.conn, project.id)
            if not versions:
                raise APIError(400, f"doczip has no version and {project_name!r} has no releases to derive one from")
            version = max(versions, key=version_key)
        release = catalog.get_release(tx.conn, project.id, version)
        if release is None:
            release = catalog.put_release(tx, ix, project, version, {"name": name, "version": version})
        docname = f"{project_name}-{version}.doc.zip"
        log = [log_entry("upload", who, ix.fullname)]
        olds = catalog.files_by_filename(tx.conn, release.id, docname, "doczip")
        nonvolatile.check_file_unchanged(core, tx.conn, who, ix, docname, sha256, olds)
        for old in olds:
            if old.sha256 == sha256:
                raise Unchanged()
            count = sum(e.get("count", 0) for e in old.log if e.get("what") == "overwrite")
            log = [log_entry("overwrite", who, ix.fullname, count=count + 1)] + log
            catalog.remove_file_row_only(tx, ix, project, old, version)
        catalog.add_file(tx, ix, release, project, filename=docname, sha256=sha256, size=size, rel="doczip",
                         log=log)


