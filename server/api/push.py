"""Promote a release: to another index on this server (rows, not bytes), or to an
external repository through the legacy upload API.

An index-to-index push copies the release's metadata, files, tox results and
doc zip rows in one transaction; the blobs are shared by hash. Checks that
may refuse a push (such as required test results) are registered on
the ``devpiserver_check_push`` hook (server/hooks.py) by the parts of the server that own them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bottle

from ..core import Core
from ..packaging.names import normalize_name
from ..repos import nonvolatile
from ..runtime.metrics import UPLOADS
from ..store import catalog
from ..store.catalog import FileRow, IndexRow, Release
from .httpkit import APIError, identity, json_reply, read_json, require_identity
from .read_guard import reader_hides, require_read
from .upload import log_entry

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


def find_release(core: Core, ix: IndexRow, name: str, version: str, hidden: tuple[str, ...] = ()
                 ) -> SourceRelease | None:
    """``hidden``: members of the resolution order the pusher may not read (never a source)."""
    for member in core.resolution_order(ix):
        if member.type == "mirror" or member.fullname in hidden:
            continue
        with core.storage.read() as conn:
            project = catalog.get_project(conn, member.id, name)
            release = catalog.get_release(conn, project.id, version) if project else None
            if release is not None:
                return SourceRelease(member, project, release, catalog.files_of_release(conn, release.id))
    return mirror_release(core, ix, name, version, hidden)


def mirror_release(core: Core, ix: IndexRow, name: str, version: str, hidden: tuple[str, ...] = ()
                   ) -> SourceRelease | None:
    """A release the index serves from a mirror, as a source to push (pinning an upstream
    release in a private index): its files are downloaded and checked now if they are not
    stored yet, its metadata read from one of them. The index's own view decides what is
    there, so a private project's name is never looked up upstream (the overlay guard)."""
    from ..mirror.repository import UpstreamError
    from ..packaging.distmeta import BadDistribution, empty_metadata
    from ..packaging.names import canonical_version

    try:
        view = core.repository(ix, hidden).get_project(name)
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
    from ..packaging.distmeta import read_distribution

    return read_distribution(core.blobs.path(sha256), filename)


MAX_PUSH_BODY = 64 * 1024  # bytes of a push request's JSON


def handle_push(core: Core, ix: IndexRow) -> bottle.HTTPResponse:
    req = bottle.request
    # Every push needs a user (to upload to the target, or to post elsewhere): decided from
    # the headers, before the body is read. The body is a small JSON object.
    require_read(core, req, ix)  # a push copies what it reads: the pusher must be a reader
    if not core.may_push_from(require_identity(core, req), ix):
        raise APIError(403, f"this token may not push from {ix.fullname} (it needs the push action there)")
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
        from .push_external import check_posturl, push_external

        check_posturl(core, str(body["posturl"]))  # a user's URL: first the destination policy
        src = _source(core, ix, str(name), str(version), body)
        _check(core, src, str(body["posturl"]))  # test gates hold for external targets too
        reply = push_external(core, src, body, _flag)
        UPLOADS.labels("push").inc()
        return reply
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
    UPLOADS.labels("push").inc()
    return json_reply(actions, "actionlog")


def _source(core: Core, ix: IndexRow, name: str, version: str, body: dict[str, Any]) -> SourceRelease:
    """The release to push, with something to push in it (else a 404 saying why)."""
    src = find_release(core, ix, normalize_name(name), version, reader_hides(core, bottle.request, ix))
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
    if core.plugins is not None:
        core.plugins.hook.devpiserver_check_push(core=core, src=src, target=target)


class _NothingToDo(Exception):
    """Every file is on the non-volatile target already, byte for byte: roll back (no serial)."""


def _copy(core: Core, who: str, src: SourceRelease, target: IndexRow, no_docs: bool,
          only_docs: bool) -> list[list[Any]]:
    """Copy the release's rows to ``target`` in one transaction. On a non-volatile target the
    rules of an upload hold (repos/nonvolatile.py): a released file keeps its bytes (the same
    bytes again are skipped, other bytes are 409, also for a name deleted with force unless
    the pusher owns the index), and a registered release's metadata is only added to."""
    actions: list[list[Any]] = []
    try:
        with core.storage.write(who) as tx:
            _copy_rows(core, tx, who, src, target, no_docs, only_docs, actions)
    except _NothingToDo:
        pass
    return actions


def _copy_rows(core: Core, tx: Any, who: str, src: SourceRelease, target: IndexRow, no_docs: bool,
               only_docs: bool, actions: list[list[Any]]) -> None:
    current = catalog.get_index(tx.conn, target.user, target.name)  # its config as of this transaction
    if current is None:
        raise APIError(404, f"target index {target.fullname} was deleted during the push")
    target = current
    volatile = not nonvolatile.is_nonvolatile(target)
    project = catalog.ensure_project(tx, target, src.project.name, src.project.display_name)
    release = catalog.get_release(tx.conn, project.id, src.release.version)
    changed = release is None
    if release is None:
        release = catalog.put_release(tx, target, project, src.release.version, dict(src.release.metadata))
    elif volatile:
        release = catalog.put_release(tx, target, project, src.release.version, dict(src.release.metadata),
                                      replace=True)
        changed = True
    else:  # registered: its metadata is only added to (a wheel's keys the sdist lacked)
        sent = {k: v for k, v in src.release.metadata.items() if v not in ("", [], None)}
        additions = nonvolatile.metadata_additions(target, release.metadata, sent)
        release = catalog.put_release(tx, target, project, release.version, additions)
        changed = bool(additions)
    actions.append([200, "register", src.project.name, src.release.version, "->", target.fullname])
    new_ids: dict[int, int] = {}  # source file id -> the row added now (its test runs are copied)
    on_target: dict[int, int] = {}  # ... or the identical row that was there (tox results attach to it)
    ordered = sorted(src.files, key=lambda f: (f.rel == "toxresult", f.id))
    for f in ordered:
        if f.rel == "doczip" and no_docs:
            continue
        if f.rel != "doczip" and only_docs:
            continue
        if f.rel == "toxresult" and f.for_file_id not in on_target:
            continue
        # the same name is the same file, whatever its bytes (as for uploads)
        existing = {x.id: x for x in catalog.files_by_filename(tx.conn, release.id, f.filename, f.rel)}
        same_path = catalog.get_file(tx.conn, target.id, f.relpath)
        if same_path is not None:
            existing[same_path.id] = same_path
        if not volatile:
            nonvolatile.check_file_unchanged(core, tx.conn, who, target, f.filename, f.sha256,
                                             list(existing.values()))
            if existing:  # the very same bytes are there: nothing to do (as for an upload)
                on_target[f.id] = next(iter(existing.values())).id
                actions.append([200, "skip_identical", f"{target.fullname}/{f.relpath}"])
                continue
        overwritten = sum(e.get("count", 0) for old in existing.values() for e in old.log
                          if e.get("what") == "overwrite")
        for old in existing.values():
            catalog.remove_file_row_only(tx, target, project, old, release.version)
        log = list(f.log) + [log_entry("push", who, target.fullname, src=src.index.fullname)]
        if existing:  # as an upload over a file of a volatile index (and the original's push)
            log = [log_entry("overwrite", who, target.fullname, count=overwritten + 1)] + log
        row = catalog.add_file(tx, target, release, project, filename=f.filename, sha256=f.sha256, size=f.size,
                               rel=f.rel, relpath=f.relpath, core_metadata_sha256=f.core_metadata_sha256,
                               for_file_id=on_target.get(f.for_file_id) if f.for_file_id else None, log=log,
                               created=f.created, yanked=f.yanked)
        new_ids[f.id] = on_target[f.id] = row.id
        changed = True
        kind = {"releasefile": "store_releasefile", "toxresult": "store_toxresult"}.get(f.rel)
        if kind:
            actions.append([200, kind, f"{target.fullname}/{f.relpath}"])
        else:
            actions.append([200, "store_doczip", src.project.name, src.release.version, "->", target.fullname])
    if not changed:
        raise _NothingToDo()
    if core.plugins is not None:
        core.plugins.hook.devpiserver_on_push_copy(tx=tx, src=src, target=target, new_file_ids=new_ids)
        events = core.plugins.events
        tx.after_commit(lambda: events.push(tx.serial, src.index.fullname, src.project.name,
                                            src.release.version, target.fullname))
