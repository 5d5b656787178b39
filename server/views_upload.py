"""The legacy upload API (twine, devpi upload, setup.py upload): POST /<user>/<index>/.

Order of work, so that nothing half-done is ever visible: check the size and
permissions, stream the body into a blob writer, open the archive to read its
metadata (which also proves it is complete), fsync the blob into the store,
and only then commit the rows that name it.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bottle

from . import catalog, nonvolatile
from .blobs import BlobWriter
from .core import Core
from .distmeta import BadDistribution, clean_metadata, empty_metadata, read_distribution
from .docs import BadDocZip, check_doc_zip
from .httpkit import APIError, identity, require_index
from .names import (
    InvalidName,
    check_filename,
    check_project_name,
    check_version,
    filename_matches,
    normalize_name,
)


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
    if req.content_length > limit:
        raise APIError(413, f"upload too large: {req.content_length} bytes, limit is {limit} bytes")
    ix = require_index(core, user, index)
    if ix.type == "mirror":
        raise APIError(404, "cannot submit to mirror index")
    ident = identity(core, req)
    if not core.may_upload(ident, ix):  # acl_upload may allow :ANONYMOUS:
        if ident is None:
            raise APIError(401, "authentication required to upload", {"WWW-Authenticate": 'Basic realm="pypi"'})
        raise APIError(403, f"no permission to submit to {ix.fullname}")
    who = ident.user if ident else None
    try:
        forms = _text_fields(req)
        files = req.files
    except Exception as e:  # bottle raises various errors on broken multipart bodies
        raise APIError(400, f"malformed form body: {e}") from None
    action = forms.get(":action")
    if not action:
        raise APIError(400, ":action field not found")
    name = _form_str(forms, "name")
    version = _form_str(forms, "version")
    if action == "submit":
        return _register(core, who, ix, name, version, forms)
    content = files.get("content")
    if content is None:
        raise APIError(400, "content file field not found")
    filename = content.raw_filename or ""
    try:
        check_filename(filename)
        check_project_name(name)
    except InvalidName as e:
        raise APIError(400, str(e)) from None
    if action == "file_upload":
        return _file_upload(core, who, ix, name, version, forms, content, filename)
    if action == "doc_upload":
        return _doc_upload(core, who, ix, name, version, content)
    raise APIError(400, f"unknown :action {action!r}")


def _text_fields(request: bottle.BaseRequest) -> Any:
    """The form's text fields, long ones included: bottle hands a field over 100 KiB (a long
    description) over as a file, which left it out of ``forms`` and stored it empty."""
    forms = request.forms
    long = [(key, item) for key, item in request.POST.allitems()
            if isinstance(item, bottle.FileUpload) and not item.raw_filename and key != "content"]
    for key, item in long:
        item.file.seek(0)
        forms.append(key, item.file.read().decode("utf-8", "replace"))
    return forms


def _form_str(forms: Any, key: str) -> str:
    value = forms.getunicode(key) if hasattr(forms, "getunicode") else forms.get(key)
    return (value or "").strip()


def _form_metadata(forms: Any) -> dict[str, Any]:
    from .distmeta import LIST_KEYS, METADATA_KEYS

    values: dict[str, Any] = {}
    for key in METADATA_KEYS:
        if key in LIST_KEYS:
            got = forms.getall(key)
            if got:
                values[key] = got
        elif key in forms:
            values[key] = forms.getunicode(key) or ""
    return clean_metadata(values)


def _receive(core: Core, content: Any, filename: str = "") -> BlobWriter:
    writer = core.blobs.writer(suffix="-" + filename if filename else "", md5=True)
    try:
        writer.copy_from(content.file, limit=core.config.max_upload_size)
    except ValueError:
        writer.discard()
        raise APIError(413, f"upload too large: limit is {core.config.max_upload_size} bytes") from None
    except Exception:
        writer.discard()
        raise
    return writer


def _check_digests(forms: Any, writer: BlobWriter) -> None:
    for field, actual in (("sha256_digest", writer.sha256), ("md5_digest", writer.md5)):
        sent = (forms.get(field) or "").strip().lower()
        if sent and sent != actual:
            raise APIError(400, f"{field} mismatch: sent {sent}, content has {actual}")


def _same_version(a: str, b: str) -> bool:
    """Equal under PEP 440; False when either is no valid version at all."""
    try:
        return check_version(a) == check_version(b)
    except InvalidName:
        return False


def _file_upload(core: Core, who: str | None, ix: catalog.IndexRow, name: str, version: str, forms: Any,
                 content: Any, filename: str) -> bottle.HTTPResponse:
    try:
        check_version(version)
        filename_matches(filename, name, version)
    except InvalidName as e:
        raise APIError(400, str(e)) from None
    with _receive(core, content, filename) as writer:
        if writer.size == 0:
            raise APIError(400, f"{filename}: empty file")
        _check_digests(forms, writer)
        try:
            info = read_distribution(writer.tmp_path, filename)
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
                if not ix.config.get("volatile", True):
                    raise APIError(409, f"{filename} already exists in non-volatile index {ix.fullname}")
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
                content: Any) -> bottle.HTTPResponse:
    project_name = normalize_name(name)
    if version:
        try:
            check_version(version)
        except InvalidName as e:
            raise APIError(400, str(e)) from None
    with _receive(core, content) as writer:
        try:
            check_doc_zip(writer.tmp_path, core.config.extra.get("max_doc_unpacked", 1024 * 1024 * 1024))
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
            from .names import version_key

            releases = catalog.list_releases(tx.conn, project.id)
            if not releases:
                raise APIError(400, f"doczip has no version and {project_name!r} has no releases to derive one from")
            version = max((r.version for r in releases), key=version_key)
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


