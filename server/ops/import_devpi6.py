"""``devpi import DIR`` for a directory written by the original devpi-server 6.x's ``devpi-export``.

Such a directory holds ``dataindex.json`` (users, indexes with their config, the metadata of
every release, and one entry per file naming its path in the directory and its recorded
hashes) and the files themselves. Nothing in it is trusted: it may come from another
machine, be damaged, or be made up. So the whole of it is read and checked before anything
is written (names, types, sizes, and that every path stays inside the directory), each
file's bytes are hashed while they are copied into the blob store and refused when they do
not match what the export recorded, and only then are all rows written in one transaction:
an import that fails leaves no rows, and at most blobs that nothing names (``devpi gc``).

What cannot be carried over is said, one note per thing (ImportSummary.notes): devpi-server
6's argon2 password hashes are carried (this server verifies them, at a bounded cost), but
a hash in another form (the salted sha256 of older versions) or with a cost beyond those
bounds is not, and such a user keeps the account with login disabled until root sets a new
password (root's own then comes from ``devpi import --root-passwd``, which also replaces a
carried one); index config keys this server does not know and index types no plugin
provides are dropped.
"""
from __future__ import annotations

import calendar
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from ..accounts.auth import argon2_within_bounds, hash_password
from ..core import Core
from ..mirror.page import LAST_RENDERABLE, relpath_for
from ..packaging.distmeta import (
    METADATA_KEYS,
    BadDistribution,
    check_metadata_sizes,
    clean_metadata,
    read_distribution,
)
from ..packaging.doc_zips import BadDocZip, check_doc_zip
from ..packaging.names import (
    InvalidName,
    check_filename,
    check_user_or_index_name,
    filename_matches,
    is_project_name,
    normalize_name,
    split_dist_filename,
)
from ..store import catalog, schema
from ..store.field_limits import FieldTooLarge, check_field
from ..store.indexconfig import ConfigError, defaults, index_types, normalize
from ..store.storage import WriteTx, dumps
from .importing import ImportRefused, ImportSummary, initialise_state

SOURCE_FORMAT = "devpi-server 6.x export"
DUMPVERSIONS = ("1", "2")
MAX_DATAINDEX_BYTES = 512 << 20  # read whole into memory: a bigger one is refused, not read
MAX_NAME = 300  # characters of a version, a file name, a relpath segment
MAX_LOG_ENTRIES = 100  # per file; more are cut (the newest kept)
CHUNK = 1 << 20
# hashes devpi-server records (entrymapping["hashes"]) that are checked against the bytes
CHECKED_HASHES = ("sha256", "md5", "sha1", "sha224", "sha384", "sha512")
USER_KEYS = catalog.USER_KEYS
# devpi-server's older names for keys we keep (its own import renames them the same way)
RENAMED_INDEX_KEYS = {"pypi_whitelist": "mirror_whitelist"}
UNUSABLE_PREFIX = "!devpi6-import!"  # never a valid hash: verify_password refuses it


class Malformed(ImportRefused):
    """dataindex.json says something no devpi-server wrote; the message says where."""


@dataclass
class FileEntry:
    """One file of the export, checked; its bytes are in ``path``."""

    index: str
    kind: str  # releasefile | doczip | toxresult
    project: str  # normalised
    version: str
    path: Path
    filename: str
    hashes: dict[str, str]
    created: float
    log: list[dict[str, Any]]
    for_entrypath: str | None = None
    url: str | None = None  # a mirrored file's upstream URL
    sha256: str = ""
    size: int = 0
    core_metadata_sha256: str | None = None
    left_out: str | None = None  # why this file is not imported (a note says so)


@dataclass
class IndexPlan:
    user: str
    name: str
    type: str
    config: dict[str, Any]
    releases: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # project -> version -> md
    display: dict[str, str] = field(default_factory=dict)  # project -> name as the export spells it
    files: list[FileEntry] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return f"{self.user}/{self.name}"


@dataclass
class Plan:
    users: dict[str, tuple[dict[str, Any], str, str, str]] = field(default_factory=dict)  # name -> config, pwhash, created, modified
    indexes: dict[str, IndexPlan] = field(default_factory=dict)


# -- reading and checking ---------------------------------------------------------------------
def _where(*parts: object) -> str:
    return " ".join(str(p) for p in parts)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"dataindex.json: {what} is not an object")
    return value


def _str(value: Any, what: str, limit: int = MAX_NAME) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or any(ord(c) < 32 for c in value):
        raise Malformed(f"dataindex.json: {what} is not a usable string: {str(value)[:80]!r}")
    return value


def read_dataindex(source: Path) -> dict[str, Any]:
    path = source / "dataindex.json"
    size = path.stat().st_size
    if size > MAX_DATAINDEX_BYTES:
        raise Malformed(f"dataindex.json is {size} bytes, more than the {MAX_DATAINDEX_BYTES} this import reads")
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Malformed(f"dataindex.json is not valid JSON: {str(e)[:200]}") from None
    data = _dict(data, "the top level")
    version = str(data.get("dumpversion"))
    if version not in DUMPVERSIONS:
        raise Malformed(f"dataindex.json has dumpversion {version[:20]!r}; this import reads {', '.join(DUMPVERSIONS)}")
    return data


def _user_config(name: str, raw: dict[str, Any], summary: ImportSummary) -> dict[str, Any]:
    config = {}
    for key in USER_KEYS:
        value = raw.get(key)
        if value in (None, ""):
            continue
        try:
            check_field(key, value)
        except FieldTooLarge as e:
            raise Malformed(f"dataindex.json: user {name!r}: {e}") from None
        config[key] = value
    return config


def _new_pwhash(name: str, raw: dict[str, Any], root_passwd: str | None,
                summary: ImportSummary) -> str:
    """The user's hash on this server: devpi-server 6's argon2 hash as it is, where it is one
    this server verifies at a bounded cost; root's from --root-passwd when given; otherwise an
    unusable one with a note saying what to do. A hash in our own scrypt form is not taken:
    devpi-server 6 never writes one, so the export was made up."""
    pwhash = raw.get("pwhash")
    carried = isinstance(pwhash, str) and len(pwhash) <= 400 and argon2_within_bounds(pwhash)
    if name == "root" and root_passwd is not None:
        summary.notes.append("user 'root': password set from --root-passwd")
        return hash_password(root_passwd)
    if carried:
        return pwhash
    form = ("argon2 beyond this server's cost bounds" if isinstance(pwhash, str) and pwhash.startswith("$argon2")
            else "salted sha256" if raw.get("pwsalt") else "unknown")
    if name == "root":
        raise ImportRefused(f"root's password hash ({form}, from devpi-server 6) cannot be checked by this "
                            "server; give `devpi import --root-passwd PW` to set root's new password")
    summary.notes.append(f"user {name!r}: password not carried over ({form} hash from devpi-server 6, which this "
                         f"server cannot check); login is disabled until root sets a new one: "
                         f"devpi user -m {name} password=NEW")
    return UNUSABLE_PREFIX + secrets.token_hex(8)


def _index_config(fullname: str, user: str, ix_type: str, raw: dict[str, Any],
                  summary: ImportSummary) -> dict[str, Any]:
    """The export's config as this server stores it: known keys normalised one by one, so one
    key we cannot take costs a note, not the index."""
    given = {RENAMED_INDEX_KEYS.get(k, k): v for k, v in raw.items() if k != "type"}
    if "pypi_whitelist" in raw and "mirror_whitelist" in raw:
        given["mirror_whitelist"] = raw["mirror_whitelist"]
    config = defaults(ix_type, user)
    if ix_type == "mirror" and given.get("mirror_url") is not None:
        config["mirror_url"] = given.get("mirror_url")  # checked as the key is taken (a mirror may have none)
    dropped = []
    for key, value in given.items():
        if not isinstance(key, str):
            continue
        try:
            config = normalize(ix_type, {key: value}, config)
        except ConfigError as e:
            if key == "mirror_url":
                raise Malformed(f"index {fullname}: {e}") from None
            dropped.append(f"{key} ({str(e)[:120]})" if not str(e).startswith("indexconfig got") else key)
    if dropped:
        summary.notes.append(f"index {fullname}: config keys dropped (unknown to this server or invalid): "
                             + ", ".join(sorted(dropped)))
    return config


def _created(entry: dict[str, Any], log: list[dict[str, Any]]) -> float:
    """When the file was uploaded: its Last-Modified, else its first log entry, else now (a time
    pages can render: between 1970 and 9999)."""
    mapping = entry.get("entrymapping") if isinstance(entry.get("entrymapping"), dict) else {}
    stamps: list[float] = []
    stamp = mapping.get("last_modified")
    if isinstance(stamp, str) and len(stamp) < 100:
        try:
            stamps.append(parsedate_to_datetime(stamp).timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    for item in log:
        when = item.get("when")
        if isinstance(when, list) and len(when) == 6 and all(type(x) is int and 0 <= x < 10_000 for x in when):
            stamps.append(float(calendar.timegm((*when, 0, 0, 0))))
    return next((t for t in stamps if 0 <= t < LAST_RENDERABLE), time.time())


def _log(value: Any, what: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise Malformed(f"dataindex.json: {what}: log is not a list of objects")
    kept = value[-MAX_LOG_ENTRIES:]
    if len(dumps(kept)) > 64 * 1024:
        raise Malformed(f"dataindex.json: {what}: log is over 64 KiB")
    return kept


def _hashes(entry: dict[str, Any], what: str) -> dict[str, str]:
    """The hashes the export recorded for a file, by name; two that disagree are refused."""
    mapping = entry.get("entrymapping")
    if mapping is None:
        return {}
    mapping = _dict(mapping, f"{what}: entrymapping")
    found: list[tuple[str, Any]] = list(_dict(mapping.get("hashes") or {}, f"{what}: hashes").items())
    spec = mapping.get("hash_spec")
    if isinstance(spec, str) and "=" in spec:
        found.append(tuple(spec.split("=", 1)))  # type: ignore[arg-type]
    if "md5" in mapping:  # devpi-server 2.1 recorded md5 by itself
        found.append(("md5", mapping["md5"]))
    out: dict[str, str] = {}
    for name, value in found:
        if not isinstance(value, str) or len(value) > 200 or not all(c in "0123456789abcdefABCDEF" for c in value):
            raise Malformed(f"dataindex.json: {what}: recorded {str(name)[:20]!r} hash is not hexadecimal")
        if out.setdefault(str(name), value.lower()) != value.lower():
            raise Malformed(f"dataindex.json: {what}: two different {str(name)[:20]!r} hashes recorded")
    return out


def _inside(source: Path, relpath: Any, what: str) -> Path:
    """The file ``relpath`` names, refused unless it is a plain relative path to a regular file
    inside the export (no ``..``, no absolute path, no symbolic link leading out)."""
    relpath = _str(relpath, f"{what}: relpath", limit=4096)
    pure = PurePosixPath(relpath)
    if pure.is_absolute() or "\\" in relpath or any(part in ("..", ".", "") for part in relpath.split("/")):
        raise Malformed(f"dataindex.json: {what}: relpath {relpath[:200]!r} is not a plain path inside the export")
    path = source.joinpath(*pure.parts)
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise Malformed(f"export file missing: {relpath[:200]}") from None
    if not resolved.is_relative_to(source.resolve()) or not resolved.is_file():
        raise Malformed(f"dataindex.json: {what}: relpath {relpath[:200]!r} is not a regular file inside the export")
    return resolved


def plan_import(data: dict[str, Any], source: Path, root_passwd: str | None, summary: ImportSummary) -> Plan:
    """Everything the export says, checked and in this server's terms; nothing written yet."""
    plan = Plan()
    for name, raw in _dict(data.get("users", {}), "users").items():
        try:
            check_user_or_index_name(name, "user name")
        except InvalidName as e:
            raise Malformed(f"dataindex.json: {e}") from None
        raw = _dict(raw, f"user {name!r}")
        created = raw.get("created") if isinstance(raw.get("created"), str) and len(raw["created"]) <= 32 else None
        modified = raw.get("modified") if isinstance(raw.get("modified"), str) and len(raw["modified"]) <= 32 else None
        plan.users[name] = (_user_config(name, raw, summary), _new_pwhash(name, raw, root_passwd, summary),
                            created or catalog.utcnow_str(), modified or created or catalog.utcnow_str())
    if "root" not in plan.users:
        if root_passwd is None:
            raise ImportRefused("the export has no user root; give `devpi import --root-passwd PW` to create it")
        plan.users["root"] = ({}, hash_password(root_passwd), catalog.utcnow_str(), catalog.utcnow_str())
    for fullname, raw in _dict(data.get("indexes", {}), "indexes").items():
        _plan_index(plan, fullname, _dict(raw, f"index {fullname!r}"), source, summary)
    for ix in plan.indexes.values():
        if ix.type == "stage":
            missing = [b for b in ix.config.get("bases", []) if b not in plan.indexes]
            if missing:
                ix.config["bases"] = [b for b in ix.config["bases"] if b not in missing]
                summary.notes.append(f"index {ix.fullname}: bases not in the export dropped: {', '.join(missing)}")
    return plan


def _plan_index(plan: Plan, fullname: str, raw: dict[str, Any], source: Path, summary: ImportSummary) -> None:
    user, sep, name = fullname.partition("/")
    try:
        if not sep:
            raise InvalidName(f"invalid index name {fullname[:100]!r}")
        check_user_or_index_name(user, "user name")
        check_user_or_index_name(name, "index name")
    except InvalidName as e:
        raise Malformed(f"dataindex.json: {e}") from None
    if user not in plan.users:
        raise Malformed(f"dataindex.json: index {fullname} belongs to user {user!r}, who is not in the export")
    rawconfig = _dict(raw.get("indexconfig"), f"index {fullname}: indexconfig")
    ix_type = rawconfig.get("type")
    if ix_type not in index_types():
        nfiles = len(raw.get("files") or []) if isinstance(raw.get("files"), list) else 0
        summary.notes.append(f"index {fullname}: left out: its type {str(ix_type)[:50]!r} is provided by no "
                             f"plugin here ({nfiles} files not imported)")
        return
    ix = IndexPlan(user, name, ix_type, _index_config(fullname, user, ix_type, rawconfig, summary))
    plan.indexes[fullname] = ix
    for project, versions in _dict(raw.get("projects") or {}, f"index {fullname}: projects").items():
        if not is_project_name(project):
            raise Malformed(f"dataindex.json: index {fullname}: invalid project name {project[:100]!r}")
        norm = normalize_name(project)
        for version, md in _dict(versions, f"index {fullname}: project {project}").items():
            _version(version, f"index {fullname}: project {project}")
            md = _dict(md, f"index {fullname}: {project} {version}")
            ix.display.setdefault(norm, md.get("name") if isinstance(md.get("name"), str)
                                  and normalize_name(md["name"]) == norm else project)
            ix.releases.setdefault(norm, {})[version] = _metadata(md, fullname, project, version)
    files = raw.get("files") or []
    if not isinstance(files, list):
        raise Malformed(f"dataindex.json: index {fullname}: files is not a list")
    for i, entry in enumerate(files):
        ix.files.append(_file_entry(ix, _dict(entry, f"index {fullname}: file {i}"), i, source))


def _metadata(md: dict[str, Any], fullname: str, project: str, version: str) -> dict[str, Any]:
    try:
        cleaned = clean_metadata({k: v for k, v in md.items() if k in METADATA_KEYS})
        check_metadata_sizes(cleaned, f"index {fullname}: {project} {version}")
    except (BadDistribution, TypeError) as e:
        raise Malformed(f"dataindex.json: {e}") from None
    cleaned["version"] = version
    cleaned.setdefault("name", project)
    return cleaned


def _file_entry(ix: IndexPlan, entry: dict[str, Any], i: int, source: Path) -> FileEntry:
    what = f"index {ix.fullname}: file {i}"
    kind = entry.get("type")
    if kind not in ("releasefile", "doczip", "toxresult"):
        raise Malformed(f"dataindex.json: {what}: unknown type {str(kind)[:40]!r}")
    project = _str(entry.get("projectname"), f"{what}: projectname")
    if not is_project_name(project):
        raise Malformed(f"dataindex.json: {what}: invalid project name {project[:100]!r}")
    path = _inside(source, entry.get("relpath"), what)
    filename = PurePosixPath(entry["relpath"]).name  # as the export names it (not a link's target)
    try:
        check_filename(filename)
    except InvalidName as e:
        raise Malformed(f"dataindex.json: {what}: {e}") from None
    version = entry.get("version")
    if version is None:  # dumpversion 1: the version is in the file name
        version = _version_of(filename)
    version = _version(version, what)
    log = _log(entry.get("log"), what)
    mapping = entry.get("entrymapping") if isinstance(entry.get("entrymapping"), dict) else {}
    url = mapping.get("url") if ix.type == "mirror" else None
    if url is not None and (not isinstance(url, str) or len(url) > 4096 or not url.startswith(("http://", "https://"))):
        raise Malformed(f"dataindex.json: {what}: url is not an http(s) URL")
    for_entrypath = None
    if kind == "toxresult":
        for_entrypath = _str(entry.get("for_entrypath"), f"{what}: for_entrypath", limit=4096)
    return FileEntry(ix.fullname, kind, normalize_name(project), version, path, filename, _hashes(entry, what),
                     _created(entry, log), log, for_entrypath, url)


def _version(value: Any, what: str) -> str:
    """A version as it becomes part of URLs: one path segment (devpi-server 6 also took versions
    that are not PEP 440, so only that is required)."""
    version = _str(value, f"{what}: version")
    if "/" in version or "\\" in version or version.startswith("."):
        raise Malformed(f"dataindex.json: {what}: version {version[:80]!r} is not one path segment")
    return version


def _version_of(filename: str) -> str:
    try:
        return split_dist_filename(filename)[1]
    except InvalidName:
        return ""


# -- the blobs ---------------------------------------------------------------------------------
def vet(f: FileEntry, mirrored: bool) -> None:
    """Leave out (with ``f.left_out`` saying why) what this server would not have accepted as an
    upload: a doc zip with path tricks, links or a bomb in it (docs are served from the zip as
    checked at upload), a stage's release file whose name names another project or version (a
    mirror keeps what its upstream named)."""
    if f.kind == "doczip":
        try:
            check_doc_zip(f.path)
        except BadDocZip as e:
            f.left_out = f"doc zip {f.filename} refused: {str(e)[:200]}"
    elif f.kind == "releasefile" and not mirrored:
        try:
            filename_matches(f.filename, f.project, f.version)
        except InvalidName as e:
            f.left_out = f"release file left out: {str(e)[:200]}"


def store_blob(core: Core, f: FileEntry) -> None:
    """Copy the file into the blob store, hashing it on the way; refuse it when a recorded hash
    does not match (the blob is then never committed)."""
    checks = {name: hashlib.new(name) for name in f.hashes if name in CHECKED_HASHES and name != "sha256"}
    with open(f.path, "rb") as src, core.blobs.writer() as writer:
        while chunk := src.read(CHUNK):
            writer.write(chunk)
            for h in checks.values():
                h.update(chunk)
        actual = {"sha256": writer.sha256, **{name: h.hexdigest() for name, h in checks.items()}}
        for name, value in f.hashes.items():
            if name in actual and actual[name] != value:
                raise ImportRefused(f"{f.path.name} ({f.index}): {name} of the file is {actual[name]}, "
                                    f"the export recorded {value}: the export is damaged or was changed")
        if writer.size == 0 and f.kind == "releasefile":
            raise ImportRefused(f"{f.path.name} ({f.index}): the file is empty")
        f.sha256, f.size = writer.sha256, writer.size
        writer.commit()
    if f.kind == "releasefile" and f.filename.endswith(".whl"):
        try:
            info = read_distribution(f.path, f.filename)
        except BadDistribution:
            return  # served as it is; only its PEP 658 metadata is missing
        if info.core_metadata:
            f.core_metadata_sha256 = core.blobs.put_bytes(info.core_metadata, durable=False)


# -- the rows ----------------------------------------------------------------------------------
def _write_users(tx: WriteTx, plan: Plan, summary: ImportSummary) -> None:
    for name, (config, pwhash, created, modified) in plan.users.items():
        catalog.create_user(tx, name, pwhash, config)
        tx.conn.execute(update(schema.users).where(schema.users.c.name == name)
                        .values(created=created, modified=modified))
        summary.users += 1


def _write_index(tx: WriteTx, ix: IndexPlan, summary: ImportSummary) -> None:
    row = catalog.create_index(tx, ix.user, ix.name, ix.config)
    summary.indexes += 1
    if ix.type == "mirror":
        _write_mirror_cache(tx, row, ix, summary)
        return
    projects: dict[str, catalog.Project] = {}
    releases: dict[tuple[str, str], catalog.Release] = {}

    def release_of(project: str, version: str) -> catalog.Release:
        if project not in projects:
            projects[project] = catalog.ensure_project(tx, row, project, ix.display.get(project, project))
            summary.projects += 1
        key = (project, version)
        if key not in releases:
            md = ix.releases.get(project, {}).get(version) or {"name": ix.display.get(project, project),
                                                                 "version": version}
            releases[key] = catalog.put_release(tx, row, projects[project], version, md, replace=True)
            summary.releases += 1
        return releases[key]

    for project, versions in ix.releases.items():
        for version in versions:
            release_of(project, version)
    by_entrypath: dict[str, catalog.FileRow] = {}
    by_filename: dict[tuple[str, str], catalog.FileRow] = {}
    for f in sorted(ix.files, key=lambda f: f.kind == "toxresult"):
        if f.left_out:
            continue
        release = release_of(f.project, f.version)
        project = projects[f.project]
        if f.kind == "releasefile":
            stored = catalog.add_file(tx, row, release, project, filename=f.filename, sha256=f.sha256,
                                      size=f.size, core_metadata_sha256=f.core_metadata_sha256, log=f.log,
                                      created=f.created)
            by_entrypath[f"{ix.fullname}/{stored.relpath}"] = stored
            by_filename[(f.project, f.filename)] = stored
            summary.files += 1
        elif f.kind == "doczip":
            catalog.add_file(tx, row, release, project, filename=f"{f.project}-{release.version}.doc.zip",
                             sha256=f.sha256, size=f.size, rel="doczip", log=f.log, created=f.created)
            summary.docs += 1
        else:
            assert f.for_entrypath is not None
            tested = by_entrypath.get(f.for_entrypath) or by_filename.get(
                (f.project, f.for_entrypath.rsplit("/", 1)[-1]))
            if tested is None:
                summary.notes.append(f"index {ix.fullname}: test result {f.filename} left out: the file it "
                                     f"tested ({f.for_entrypath[:200]}) is not in the export")
                continue
            tested_release = release if tested.release_id == release.id else catalog.Release(
                tested.release_id, project.id, f.version, {}, 0.0)
            dirpath = tested.relpath.rsplit("/", 1)[0]
            catalog.add_file(tx, row, tested_release, project, filename=f.filename, sha256=f.sha256,
                             size=f.size, rel="toxresult", relpath=f"{dirpath}/{f.filename}",
                             for_file_id=tested.id, log=f.log, created=f.created)
            summary.toxresults += 1
        summary.bytes += f.size


def _write_mirror_cache(tx: WriteTx, row: catalog.IndexRow, ix: IndexPlan, summary: ImportSummary) -> None:
    """A mirror's files go into the mirror cache (not the changelog, as when the mirror fetched
    them), with a stored page per project listing them, so an offline server serves them. The
    page is marked as fetched long ago: an online server revalidates it with upstream first."""
    if not ix.files:
        return
    mirror_url = str(ix.config.get("mirror_url") or "")  # an unconfigured mirror has none
    if mirror_url and not mirror_url.endswith("/"):
        mirror_url += "/"
    links: dict[str, list[dict[str, Any]]] = {}
    for f in ix.files:
        if f.kind != "releasefile" or f.left_out:
            continue
        url = f.url or f"{mirror_url}{f.project}/{f.filename}"  # only the file name matters offline
        md = ix.releases.get(f.project, {}).get(f.version, {})
        link = {"filename": f.filename, "url": url.split("#", 1)[0], "version": f.version, "sha256": f.sha256,
                "md5": None, "requires_python": md.get("requires_python") or None, "yanked": None,
                "core_metadata_sha256": None, "core_metadata": False, "size": f.size, "upload_time": f.created}
        links.setdefault(f.project, []).append(link)
        tx.conn.execute(insert(schema.mirror_files).values(
            index_id=row.id, relpath=relpath_for(link), project=f.project, filename=f.filename, sha256=f.sha256,
            size=f.size, created=f.created, url=link["url"]))
        summary.bytes += f.size
    for project, page in links.items():
        tx.conn.execute(insert(schema.mirror_pages).values(
            index_id=row.id, project=project, url=f"{mirror_url}{project}/",
            links=json.dumps(page, separators=(",", ":")), etag=None, last_modified=None, serial=None, fetched=0.0))
    count = sum(len(v) for v in links.values())
    summary.notes.append(f"index {ix.fullname}: {count} mirrored files put into its cache "
                         f"({len(links)} projects), served offline too")


def import_into(core: Core, source: Path, out: Callable[[str], None],
                root_passwd: str | None = None) -> ImportSummary:
    """Read the export in ``source`` into ``core``'s fresh storage (see the module docstring)."""
    summary = ImportSummary(source_format=SOURCE_FORMAT)
    source = source.resolve()
    if root_passwd is None:
        root_passwd = core.config.root_passwd
    data = read_dataindex(source)
    summary.source_format = f"devpi-server {str(data.get('devpi_server') or '6.x')[:30]} export"
    plan = plan_import(data, source, root_passwd, summary)
    files = [f for ix in plan.indexes.values() for f in ix.files]
    out(f"checking and copying {len(files)} files ...")
    for f in files:
        vet(f, plan.indexes[f.index].type == "mirror")
        if f.left_out:
            summary.notes.append(f"index {f.index}: {f.left_out}")
            continue
        store_blob(core, f)  # fsynced, with its directory, before any row names it
    unchecked = [f for f in files if not f.left_out and not any(name in CHECKED_HASHES for name in f.hashes)]
    if unchecked:
        summary.notes.append(f"{len(unchecked)} files had no recorded hash to check them against "
                             f"(e.g. {unchecked[0].index}/{unchecked[0].filename}); taken as they are")
    try:
        with core.storage.write("root") as tx:
            initialise_state(tx)
            _write_users(tx, plan, summary)
            for ix in plan.indexes.values():
                _write_index(tx, ix, summary)
            tx.record("import", source=SOURCE_FORMAT)
    except (catalog.Conflict, IntegrityError) as e:  # two entries for one name (case aside)
        first = str(getattr(e, "orig", None) or e).splitlines()[0][:300]
        raise Malformed(f"dataindex.json names one thing twice: {first}") from None
    return summary
