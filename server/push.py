"""Promote a release: to another index on this server (rows, not bytes), or to an
external repository through the legacy upload API.

An index-to-index push copies the release's metadata, files, tox results and
doc zip rows in one transaction; the blobs are shared by hash. Checks that
may refuse a push (such as required test results) are registered on
``core.push_checks`` by the parts of the server that own them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bottle

from . import __version__, catalog
from .catalog import FileRow, IndexRow, Release
from .core import Core
from .httpkit import APIError, identity, json_reply, read_json, require_identity
from .names import normalize_name
from .views_upload import log_entry

log = logging.getLogger("devpi.server.push")
KNOWN_KEYS = {"name", "version", "targetindex", "posturl", "username", "password", "no_docs", "only_docs",
              "register_project"}


@dataclass
class SourceRelease:
    index: IndexRow
    project: catalog.Project
    release: Release
    files: list[FileRow]


PushCheck = Callable[[Core, SourceRelease, str], None]  # raise APIError to refuse


def find_release(core: Core, ix: IndexRow, name: str, version: str) -> SourceRelease | None:
    for member in core.resolution_order(ix):
        if member.type == "mirror":
            continue
        with core.storage.read() as conn:
            project = catalog.get_project(conn, member.id, name)
            release = catalog.get_release(conn, project.id, version) if project else None
            if release is not None:
                return SourceRelease(member, project, release, catalog.files_of_release(conn, release.id))
    return mirror_release(core, ix, name, version)


def mirror_release(core: Core, ix: IndexRow, name: str, version: str) -> SourceRelease | None:
    """A release the index serves from a mirror, as a source to push (pinning an upstream
    release in a private index): its files are downloaded and checked now if they are not
    stored yet, its metadata read from one of them. The index's own view decides what is
    there, so a private project's name is never looked up upstream (the overlay guard)."""
    from .distmeta import BadDistribution, empty_metadata
    from .mirror import UpstreamError
    from .names import canonical_version

    try:
        view = core.repository(ix).get_project(name)
    except UpstreamError as e:
        raise APIError(502, str(e)) from None
    indexes = core.indexes()
    wanted = canonical_version(version)
    links = [lk for lk in (view.links if view else []) if lk.version and canonical_version(lk.version) == wanted
             and lk.stage in indexes and indexes[lk.stage].type == "mirror"]
    if not links:
        return None
    mirror_ix = indexes[links[0].stage]
    mirror = core.single_repository(mirror_ix)
    timeout = max(300.0, 10 * core.config.request_timeout)
    links = [lk for lk in links if lk.stage == mirror_ix.fullname]
    with ThreadPoolExecutor(max_workers=min(8, len(links))) as pool:  # a release may have dozens of wheels
        blobs = list(pool.map(lambda lk: mirror.stored_file(lk.path[len(lk.stage) + 1:], timeout),  # type: ignore[attr-defined]
                              links))
    stored = list(zip(links, blobs, strict=True))
    files = [FileRow(id=-n, index_id=mirror_ix.id, release_id=0, relpath=catalog.file_relpath(sf.sha256, lk.filename),
                     filename=lk.filename, rel="releasefile", sha256=sf.sha256, size=sf.size,
                     created=lk.upload_time or sf.created, yanked=lk.yanked, core_metadata_sha256=None,
                     for_file_id=None, log=[])
             for n, (lk, sf) in enumerate(stored, 1)]
    shown_version = links[0].version
    release_metadata: dict | None = None
    for f in sorted(files, key=lambda f: not f.filename.endswith(".whl")):  # a wheel's metadata first
        if release_metadata is not None and not f.filename.endswith(".whl"):
            break  # every wheel offers its own METADATA (PEP 658); an sdist is read only if no wheel was
        try:
            info = _read_blob_distribution(core, f.sha256, f.filename)
        except BadDistribution as e:
            log.warning("push from %s: %s", mirror_ix.fullname, e)
            continue
        if info.core_metadata:
            f.core_metadata_sha256 = core.blobs.put_bytes(info.core_metadata, durable=False)
        if info.metadata and release_metadata is None:
            release_metadata = info.metadata
    metadata = {**empty_metadata(view.name, shown_version), **(release_metadata or {})}  # type: ignore[union-attr]
    display = str(metadata.get("name") or view.name)  # type: ignore[union-attr]
    project = catalog.Project(0, mirror_ix.id, normalize_name(display), display)
    release = Release(0, 0, shown_version, metadata, time.time(), metadata.get("requires_python") or None)
    return SourceRelease(mirror_ix, project, release, files)


def _read_blob_distribution(core: Core, sha256: str, filename: str) -> Any:
    """read_distribution of a blob (the file name says which kind of archive it is)."""
    from .distmeta import read_distribution

    return read_distribution(core.blobs.path(sha256), filename)


MAX_PUSH_BODY = 64 * 1024  # bytes of a push request's JSON


def handle_push(core: Core, ix: IndexRow) -> bottle.HTTPResponse:
    req = bottle.request
    # Every push needs a user (to upload to the target, or to post elsewhere): decided from
    # the headers, before the body is read. The body is a small JSON object.
    require_identity(core, req)
    body = read_json(req, max_bytes=MAX_PUSH_BODY)
    if not isinstance(body, dict):
        raise APIError(400, "push needs a JSON object with name, version and targetindex or posturl")
    unknown = sorted(set(body) - KNOWN_KEYS)
    if unknown:
        raise APIError(400, "unknown additional options: " + ", ".join(unknown))
    name, version = body.get("name"), body.get("version")
    if not name or not version:
        raise APIError(400, "push needs 'name' and 'version'")
    if body.get("posturl"):
        require_identity(core, req)
        src = _source(core, ix, str(name), str(version), body)
        _check(core, src, str(body["posturl"]))  # test gates hold for external targets too
        return _push_external(core, src, body)
    target_name = body.get("targetindex") or ""
    parts = str(target_name).split("/")
    if len(parts) != 2 or not all(parts):
        raise APIError(400, "targetindex not in format user/index")
    target = core.get_index(*parts)
    if target is None:
        raise APIError(404, f"target index {target_name} does not exist")
    ident = identity(core, req)
    if ident is None or not core.may_upload(ident, target):
        raise APIError(401, f"user {ident.user if ident else 'anonymous'!r} cannot upload to {target.fullname!r}")
    src = _source(core, ix, str(name), str(version), body)  # after the checks: it may download
    if target.id == src.index.id:  # would drop and re-add its own rows (and their test runs)
        raise APIError(400, f"{name} {version} is on {target.fullname} already: push it to another index")
    _check(core, src, target.fullname)
    actions = _copy(core, ident.user, src, target, _flag(body.get("no_docs")), _flag(body.get("only_docs")))
    return json_reply(actions, "actionlog")


def _source(core: Core, ix: IndexRow, name: str, version: str, body: dict[str, Any]) -> SourceRelease:
    """The release to push, with something to push in it (else a 404 saying why)."""
    src = find_release(core, ix, normalize_name(name), version)
    if src is None or not src.files:
        raise APIError(404, f"no release/files found for {name} {version}")
    kinds = {f.rel for f in src.files}
    if _flag(body.get("only_docs")) and "doczip" not in kinds:
        raise APIError(404, f"{name} {version} has no documentation to push")
    if _flag(body.get("no_docs")) and "releasefile" not in kinds:  # would make a release without files
        raise APIError(404, f"{name} {version} has only documentation: nothing to push without it")
    return src


def _flag(value: Any) -> bool:
    """JSON true/false, or a string as a command line gives it ("false" is no)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _check(core: Core, src: SourceRelease, target: str) -> None:
    for check in core.config.extra.get("push_checks", []):
        check(core, src, target)


def _copy(core: Core, who: str, src: SourceRelease, target: IndexRow, no_docs: bool,
          only_docs: bool) -> list[list[Any]]:
    actions: list[list[Any]] = []
    volatile = target.config.get("volatile", True)
    with core.storage.write(who) as tx:
        project = catalog.ensure_project(tx, target, src.project.name, src.project.display_name)
        release = catalog.get_release(tx.conn, project.id, src.release.version)
        if release is None:
            release = catalog.put_release(tx, target, project, src.release.version, dict(src.release.metadata))
        else:
            release = catalog.put_release(tx, target, project, src.release.version, dict(src.release.metadata),
                                          replace=True)
        actions.append([200, "register", src.project.name, src.release.version, "->", target.fullname])
        new_ids: dict[int, int] = {}
        ordered = sorted(src.files, key=lambda f: (f.rel == "toxresult", f.id))
        for f in ordered:
            if f.rel == "doczip" and no_docs:
                continue
            if f.rel != "doczip" and only_docs:
                continue
            if f.rel == "toxresult" and f.for_file_id not in new_ids:
                continue
            # the same name is the same file, whatever its bytes (as for uploads)
            existing = {x.id: x for x in catalog.files_by_filename(tx.conn, release.id, f.filename, f.rel)}
            same_path = catalog.get_file(tx.conn, target.id, f.relpath)
            if same_path is not None:
                existing[same_path.id] = same_path
            if existing and not volatile:
                raise APIError(409, f"{f.filename} already exists in non-volatile index {target.fullname}")
            for old in existing.values():
                catalog.remove_file_row_only(tx, target, project, old, release.version)
            log = list(f.log) + [log_entry("push", who, target.fullname, src=src.index.fullname)]
            row = catalog.add_file(tx, target, release, project, filename=f.filename, sha256=f.sha256, size=f.size,
                                   rel=f.rel, relpath=f.relpath, core_metadata_sha256=f.core_metadata_sha256,
                                   for_file_id=new_ids.get(f.for_file_id) if f.for_file_id else None, log=log,
                                   created=f.created, yanked=f.yanked)
            new_ids[f.id] = row.id
            kind = {"releasefile": "store_releasefile", "toxresult": "store_toxresult"}.get(f.rel)
            if kind:
                actions.append([200, kind, f"{target.fullname}/{f.relpath}"])
            else:
                actions.append([200, "store_doczip", src.project.name, src.release.version, "->", target.fullname])
        for hook in core.config.extra.get("push_copy_hooks", []):
            hook(tx, src, target, new_ids)
    return actions


def _push_external(core: Core, src: SourceRelease, body: dict[str, Any]) -> bottle.HTTPResponse:
    import requests

    posturl = str(body["posturl"])
    auth = (str(body.get("username") or ""), str(body.get("password") or ""))
    headers = {"User-Agent": f"devpi-server/{__version__}"}
    md = {k: v for k, v in src.release.metadata.items() if v not in (None, "", [])}
    actions: list[list[Any]] = []
    ok = True
    session = requests.Session()

    def post(data: dict[str, Any], files: dict | None) -> requests.Response | None:
        nonlocal ok
        try:
            return session.post(posturl, data=data, files=files, auth=auth, headers=headers, timeout=120)
        except requests.RequestException as e:
            actions.append([-1, f"exception on posting to {posturl}", str(e)])
            ok = False
            return None

    if body.get("register_project"):
        r = post({":action": "submit", **md}, None)
        if r is not None:
            actions.append([r.status_code, "register", src.project.name, src.release.version])
    for f in src.files:
        if f.rel not in ("releasefile", "doczip"):
            continue
        if f.rel == "doczip" and _flag(body.get("no_docs")):
            continue
        if f.rel == "releasefile" and _flag(body.get("only_docs")):
            continue
        data = core.blobs.read_bytes(f.sha256)
        if f.rel == "releasefile":
            form = {":action": "file_upload", "protocol_version": "1", "sha256_digest": f.sha256,
                    "filetype": "bdist_wheel" if f.filename.endswith(".whl") else "sdist",
                    "pyversion": "py3" if f.filename.endswith(".whl") else "source", **md}
            r = post(form, {"content": (f.filename, data)})
            if r is not None:
                actions.append([r.status_code, "upload", f"{src.index.fullname}/{f.relpath}",
                                "" if r.ok else r.text[:500] or r.reason])
                ok = ok and r.status_code in (200, 201)
        else:
            r = post({":action": "doc_upload", "name": md.get("name", src.project.name),
                      "version": src.release.version}, {"content": (f"{src.project.name}.zip", data)})
            if r is not None:
                actions.append([r.status_code, "docfile", src.project.name])
                ok = ok and r.status_code in (200, 201)
    return json_reply(actions, "actionlog", status=200 if ok else 502)
