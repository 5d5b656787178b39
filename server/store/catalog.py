"""Rows in and out: users, indexes, projects, releases and files.

Functions here take a SQLAlchemy connection (a read or write transaction) and
speak in small dataclasses, so HTTP views never build SQL and the same code
runs on SQLite and PostgreSQL. Writes record what they changed on the
transaction (``tx.record``), which becomes the serial's changelog entry.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from ..packaging.names import canonical_version
from . import schema
from .storage import WriteTx, dumps, kv_get, kv_set, loads


class Conflict(ValueError):
    pass


def utcnow_str() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- users ---------------------------------------------------------------------------
USER_KEYS = ("email", "title", "description", "custom_data")


@dataclass
class User:
    name: str
    pwhash: str
    config: dict[str, Any]
    created: str
    modified: str

    def public(self) -> dict[str, Any]:
        out = {k: v for k, v in self.config.items() if v not in (None, "")}
        out.update(username=self.name, created=self.created, modified=self.modified)
        return out


def _user(row) -> User:
    return User(row.name, row.pwhash, loads(row.config) or {}, row.created, row.modified)


def get_user(conn: Connection, name: str) -> User | None:
    row = conn.execute(select(schema.users).where(schema.users.c.name == name)).first()
    return _user(row) if row else None


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(select(schema.users).order_by(schema.users.c.name))]


def user_named_alike(conn: Connection, name: str) -> str | None:
    """The stored user whose name equals ``name`` after case folding (names are ASCII, so
    SQL's lower() is case folding): ``Root`` must not become a second ``root``."""
    q = select(schema.users.c.name).where(func.lower(schema.users.c.name) == name.lower()).limit(1)
    return conn.execute(q).scalar()


def create_user(tx: WriteTx, name: str, pwhash: str, config: dict[str, Any]) -> User:
    alike = user_named_alike(tx.conn, name)
    if alike is not None:
        raise Conflict(f"user {name!r} already exists" if alike == name
                       else f"user {name!r} already exists as {alike!r} (names differing only in case are one name)")
    now = utcnow_str()
    config = {k: v for k, v in config.items() if v not in (None, "")}
    tx.conn.execute(insert(schema.users).values(name=name, pwhash=pwhash, config=dumps(config),
                                                created=now, modified=now))
    tx.record("user", user=name, op="create")
    return User(name, pwhash, config, now, now)


def modify_user(tx: WriteTx, user: User, changes: dict[str, Any], pwhash: str | None = None) -> User:
    config = dict(user.config)
    for key, value in changes.items():
        if value in (None, "", [], {}):
            config.pop(key, None)
        else:
            config[key] = value
    now = utcnow_str()
    values: dict[str, Any] = {"config": dumps(config), "modified": now}
    if pwhash:
        values["pwhash"] = pwhash
    tx.conn.execute(update(schema.users).where(schema.users.c.name == user.name).values(**values))
    tx.record("user", user=user.name, op="modify", password=bool(pwhash))
    return User(user.name, pwhash or user.pwhash, config, user.created, now)


def delete_user(tx: WriteTx, name: str) -> None:
    own = list_indexes(tx.conn, name)
    drop_from_bases(tx, {ix.fullname for ix in own})
    for ix in own:
        delete_index(tx, ix)
    from .tokens import delete_user_tokens

    delete_user_tokens(tx, name)
    tx.conn.execute(delete(schema.users).where(schema.users.c.name == name))
    tx.record("user", user=name, op="delete")


# -- indexes -------------------------------------------------------------------------
@dataclass
class IndexRow:
    id: int
    user: str
    name: str
    type: str
    config: dict[str, Any]

    @property
    def fullname(self) -> str:
        return f"{self.user}/{self.name}"

    @property
    def bases(self) -> list[str]:
        return list(self.config.get("bases") or [])

    def public(self) -> dict[str, Any]:
        return dict(self.config)


def _index(row) -> IndexRow:
    return IndexRow(row.id, row.user, row.name, row.type, loads(row.config))


def get_index(conn: Connection, user: str, name: str) -> IndexRow | None:
    row = conn.execute(select(schema.indexes).where(schema.indexes.c.user == user,
                                                    schema.indexes.c.name == name)).first()
    return _index(row) if row else None


def list_indexes(conn: Connection, user: str | None = None) -> list[IndexRow]:
    q = select(schema.indexes).order_by(schema.indexes.c.user, schema.indexes.c.name)
    if user is not None:
        q = q.where(schema.indexes.c.user == user)
    return [_index(r) for r in conn.execute(q)]


LAST_INDEX_ID = "last_index_id"  # kv key: the largest index id ever given out (SQLite)


def _unused_index_id(tx: WriteTx) -> int | None:
    """On SQLite an id no index ever had; None elsewhere (a PostgreSQL sequence never
    gives one out twice).

    SQLite gives a new row the largest id plus one, so an index created right after the
    newest one was deleted got its id back, and whatever still named the old index by id
    (a mirror cache write queued before the delete and committed after it) then landed
    on the new one. Runs inside the write transaction, which serialises index creation."""
    if tx.conn.dialect.name != "sqlite":
        return None
    largest = tx.conn.execute(select(func.max(schema.indexes.c.id))).scalar() or 0
    new_id = max(int(kv_get(tx.conn, LAST_INDEX_ID) or 0), largest) + 1
    kv_set(tx.conn, LAST_INDEX_ID, str(new_id))
    return new_id


def create_index(tx: WriteTx, user: str, name: str, config: dict[str, Any]) -> IndexRow:
    alike = tx.conn.execute(select(schema.indexes.c.name).where(
        schema.indexes.c.user == user, func.lower(schema.indexes.c.name) == name.lower()).limit(1)).scalar()
    if alike is not None:
        raise Conflict(f"index '{user}/{name}' exists" if alike == name
                       else f"index '{user}/{name}' exists as '{user}/{alike}' (names differing only in case are one name)")
    values: dict[str, Any] = {"user": user, "name": name, "type": config["type"], "config": dumps(config)}
    new_id = _unused_index_id(tx)
    if new_id is not None:
        values["id"] = new_id
    res = tx.conn.execute(insert(schema.indexes).values(**values))
    tx.record("index", index=f"{user}/{name}", op="create")
    return IndexRow(res.inserted_primary_key[0], user, name, config["type"], config)


def modify_index(tx: WriteTx, ix: IndexRow, config: dict[str, Any]) -> IndexRow:
    tx.conn.execute(update(schema.indexes).where(schema.indexes.c.id == ix.id).values(config=dumps(config)))
    tx.record("index", index=ix.fullname, op="modify")
    return IndexRow(ix.id, ix.user, ix.name, ix.type, config)


def drop_from_bases(tx: WriteTx, gone: set[str]) -> list[str]:
    """Take the indexes in ``gone`` out of every other index's ``bases``, each change
    recorded: a user's data is theirs to delete, and another user naming it as a base
    must not keep it (or its name, which someone could create again) alive."""
    changed = []
    for other in list_indexes(tx.conn):
        if other.fullname in gone or not any(b in gone for b in other.bases):
            continue
        removed = [b for b in other.bases if b in gone]
        config = {**other.config, "bases": [b for b in other.bases if b not in gone]}
        tx.conn.execute(update(schema.indexes).where(schema.indexes.c.id == other.id)
                        .values(config=dumps(config)))
        tx.record("index", index=other.fullname, op="modify", bases_removed=removed)
        changed.append(other.fullname)
    return changed


def delete_index(tx: WriteTx, ix: IndexRow) -> None:
    drop_from_bases(tx, {ix.fullname})
    # Children first: SQLite only cascades with foreign_keys=ON, and we want no reliance on it.
    pids = select(schema.projects.c.id).where(schema.projects.c.index_id == ix.id)
    tx.conn.execute(delete(schema.files).where(schema.files.c.index_id == ix.id,
                                               schema.files.c.rel == "toxresult"))
    tx.conn.execute(delete(schema.files).where(schema.files.c.index_id == ix.id))
    tx.conn.execute(delete(schema.releases).where(schema.releases.c.project_id.in_(pids)))
    tx.conn.execute(delete(schema.projects).where(schema.projects.c.index_id == ix.id))
    tx.conn.execute(delete(schema.deleted_files).where(schema.deleted_files.c.index_id == ix.id))
    tx.conn.execute(delete(schema.indexes).where(schema.indexes.c.id == ix.id))
    tx.record("index", index=ix.fullname, op="delete")


# -- projects and releases -----------------------------------------------------------
@dataclass
class Project:
    id: int
    index_id: int
    name: str
    display_name: str


_get_project = select(schema.projects).where(schema.projects.c.index_id == bindparam("index_id"),
                                             schema.projects.c.name == bindparam("name"))


def get_project(conn: Connection, index_id: int, name: str) -> Project | None:
    # built once: asked for every cold page of a stage index (see mirror_store on why)
    row = conn.execute(_get_project, {"index_id": index_id, "name": name}).first()
    return Project(row.id, row.index_id, row.name, row.display_name) if row else None


def project_names(conn: Connection, index_id: int) -> list[str]:
    q = (select(schema.projects.c.name).where(schema.projects.c.index_id == index_id)
         .order_by(schema.projects.c.name))
    return [r[0] for r in conn.execute(q)]


def ensure_project(tx: WriteTx, ix: IndexRow, name: str, display_name: str) -> Project:
    p = get_project(tx.conn, ix.id, name)
    if p:
        return p
    res = tx.conn.execute(insert(schema.projects).values(index_id=ix.id, name=name,
                                                         display_name=display_name, created=time.time()))
    return Project(res.inserted_primary_key[0], ix.id, name, display_name)


@dataclass
class Release:
    id: int
    project_id: int
    version: str
    metadata: dict[str, Any]
    created: float
    requires_python: str | None = None


def _release(row) -> Release:
    return Release(row.id, row.project_id, row.version, loads(row.metadata) or {}, row.created,
                   row.requires_python)


def _rp(metadata: dict[str, Any]) -> str | None:
    return metadata.get("requires_python") or None


_release_by_version = select(schema.releases).where(schema.releases.c.project_id == bindparam("project_id"),
                                                    schema.releases.c.version == bindparam("version"))
_release_by_canonical = (select(schema.releases)
                         .where(schema.releases.c.project_id == bindparam("project_id"),
                                schema.releases.c.canonical_version == bindparam("canonical"))
                         .order_by(schema.releases.c.id).limit(1))


def get_release(conn: Connection, project_id: int, version: str) -> Release | None:
    """The release of this version as PEP 440 compares versions: "4.0.0" finds a stored
    "4.0" (as on the upstream index), so one version never becomes two releases whose
    files share names. Both look-ups are one indexed query each, whatever the number of
    versions: an upload asks this for a new version several times."""
    row = conn.execute(_release_by_version, {"project_id": project_id, "version": version}).first()
    if row is None:
        row = conn.execute(_release_by_canonical,
                           {"project_id": project_id, "canonical": canonical_version(version)}).first()
    return _release(row) if row else None


def release_versions(conn: Connection, project_id: int) -> list[str]:
    """Just the versions: choosing the newest needs no release's metadata parsed."""
    q = select(schema.releases.c.version).where(schema.releases.c.project_id == project_id)
    return [r[0] for r in conn.execute(q)]


def list_releases(conn: Connection, project_id: int) -> list[Release]:
    q = select(schema.releases).where(schema.releases.c.project_id == project_id)
    return [_release(r) for r in conn.execute(q)]


def put_release(tx: WriteTx, ix: IndexRow, project: Project, version: str,
                metadata: dict[str, Any], *, replace: bool = False) -> Release:
    """Create the release, or update the metadata keys given (all of them with replace)."""
    rel = get_release(tx.conn, project.id, version)
    if rel is None:
        res = tx.conn.execute(insert(schema.releases).values(
            project_id=project.id, version=version, canonical_version=canonical_version(version),
            metadata=dumps(metadata), created=time.time(), requires_python=_rp(metadata)))
        rel = Release(res.inserted_primary_key[0], project.id, version, metadata, time.time(), _rp(metadata))
    else:
        merged = dict(metadata) if replace else {**rel.metadata, **metadata}
        if "version" in merged:
            merged["version"] = rel.version  # the release's own spelling ("4.0" when "4.0.0" was sent)
        if merged != rel.metadata:
            tx.conn.execute(update(schema.releases).where(schema.releases.c.id == rel.id)
                            .values(metadata=dumps(merged), requires_python=_rp(merged)))
            rel.requires_python = _rp(merged)
            rel.metadata = merged
    tx.record("release", index=ix.fullname, project=project.name, version=version)
    return rel


# -- files ---------------------------------------------------------------------------
@dataclass
class FileRow:
    id: int
    index_id: int
    release_id: int
    relpath: str
    filename: str
    rel: str
    sha256: str
    size: int
    created: float
    yanked: str | None
    core_metadata_sha256: str | None
    for_file_id: int | None
    log: list[dict[str, Any]] = field(default_factory=list)


def _file(row) -> FileRow:
    return FileRow(row.id, row.index_id, row.release_id, row.relpath, row.filename, row.rel, row.sha256,
                   row.size, row.created, row.yanked, row.core_metadata_sha256, row.for_file_id,
                   loads(row.log) or [])


def file_relpath(sha256: str, filename: str) -> str:
    """devpi's layout: +f/<3 hex>/<13 hex>/<filename> under the index URL."""
    return f"+f/{sha256[:3]}/{sha256[3:16]}/{filename}"


def get_file(conn: Connection, index_id: int, relpath: str) -> FileRow | None:
    row = conn.execute(select(schema.files).where(schema.files.c.index_id == index_id,
                                                  schema.files.c.relpath == relpath)).first()
    return _file(row) if row else None


def get_file_by_id(conn: Connection, file_id: int) -> FileRow | None:
    row = conn.execute(select(schema.files).where(schema.files.c.id == file_id)).first()
    return _file(row) if row else None


def files_of_release(conn: Connection, release_id: int) -> list[FileRow]:
    q = select(schema.files).where(schema.files.c.release_id == release_id).order_by(schema.files.c.id)
    return [_file(r) for r in conn.execute(q)]


def files_by_filename(conn: Connection, release_id: int, filename: str, rel: str) -> list[FileRow]:
    q = select(schema.files).where(schema.files.c.release_id == release_id,
                                   schema.files.c.filename == filename, schema.files.c.rel == rel)
    return [_file(r) for r in conn.execute(q)]


@dataclass
class ProjectFiles:
    """Everything a simple page of one project on one stage needs, in one query."""
    project: Project
    releases: dict[int, Release]
    files: list[FileRow]


def project_files(conn: Connection, index_id: int, name: str, rel: str | None = "releasefile",
                  with_metadata: bool = True) -> ProjectFiles | None:
    """Files of a project on one stage; without metadata, releases carry only what pages need."""
    project = get_project(conn, index_id, name)
    if project is None:
        return None
    if with_metadata:
        releases = {r.id: r for r in list_releases(conn, project.id)}
    else:
        q = (select(schema.releases.c.id, schema.releases.c.version, schema.releases.c.created,
                    schema.releases.c.requires_python).where(schema.releases.c.project_id == project.id))
        releases = {r.id: Release(r.id, project.id, r.version, {}, r.created, r.requires_python)
                    for r in conn.execute(q)}
    q = (select(schema.files).join(schema.releases, schema.releases.c.id == schema.files.c.release_id)
         .where(schema.releases.c.project_id == project.id).order_by(schema.files.c.id))
    if rel:
        q = q.where(schema.files.c.rel == rel)
    return ProjectFiles(project, releases, [_file(r) for r in conn.execute(q)])


def add_file(tx: WriteTx, ix: IndexRow, release: Release, project: Project, *, filename: str,
             sha256: str, size: int, rel: str = "releasefile", relpath: str | None = None,
             core_metadata_sha256: str | None = None, for_file_id: int | None = None,
             log: list[dict[str, Any]] | None = None, created: float | None = None,
             yanked: str | None = None) -> FileRow:
    relpath = relpath or file_relpath(sha256, filename)
    created = created or time.time()
    res = tx.conn.execute(insert(schema.files).values(
        index_id=ix.id, release_id=release.id, relpath=relpath, filename=filename, rel=rel,
        sha256=sha256, size=size, created=created, yanked=yanked,
        core_metadata_sha256=core_metadata_sha256, for_file_id=for_file_id, log=dumps(log or [])))
    tx.conn.execute(delete(schema.deleted_files).where(schema.deleted_files.c.index_id == ix.id,
                                                       schema.deleted_files.c.relpath == relpath))
    tx.record("file", index=ix.fullname, project=project.name, version=release.version,
              relpath=relpath, rel=rel, op="add")
    return FileRow(res.inserted_primary_key[0], ix.id, release.id, relpath, filename, rel, sha256, size,
                   created, yanked, core_metadata_sha256, for_file_id, log or [])


def set_yanked(tx: WriteTx, ix: IndexRow, project: Project, release: Release, yanked: str | None) -> int:
    n = tx.conn.execute(update(schema.files).where(schema.files.c.release_id == release.id,
                                                   schema.files.c.rel == "releasefile")
                        .values(yanked=yanked)).rowcount
    tx.record("yank", index=ix.fullname, project=project.name, version=release.version,
              yanked=yanked is not None)
    return n


def remove_file(tx: WriteTx, ix: IndexRow, project: Project, f: FileRow, version: str) -> None:
    """Delete one file row (and results attached to it); the release goes with its last file."""
    tx.conn.execute(delete(schema.files).where(schema.files.c.for_file_id == f.id))
    tx.conn.execute(delete(schema.files).where(schema.files.c.id == f.id))
    _mark_deleted(tx, ix, f.relpath)
    tx.record("file", index=ix.fullname, project=project.name, version=version, relpath=f.relpath,
              rel=f.rel, op="delete")
    left = tx.conn.execute(select(func.count()).select_from(schema.files)
                           .where(schema.files.c.release_id == f.release_id)).scalar()
    if not left:
        remove_release(tx, ix, project, f.release_id, version)


def remove_file_row_only(tx: WriteTx, ix: IndexRow, project: Project, f: FileRow, version: str) -> None:
    """Drop a file that is being replaced (volatile overwrite); its release stays."""
    tx.conn.execute(delete(schema.files).where(schema.files.c.for_file_id == f.id))
    tx.conn.execute(delete(schema.files).where(schema.files.c.id == f.id))
    tx.record("file", index=ix.fullname, project=project.name, version=version, relpath=f.relpath,
              rel=f.rel, op="replace")


def _mark_deleted(tx: WriteTx, ix: IndexRow, relpath: str) -> None:
    exists = tx.conn.execute(select(schema.deleted_files.c.serial).where(
        schema.deleted_files.c.index_id == ix.id, schema.deleted_files.c.relpath == relpath)).first()
    if not exists:
        tx.conn.execute(insert(schema.deleted_files).values(index_id=ix.id, relpath=relpath,
                                                            serial=tx.serial))


def remove_release(tx: WriteTx, ix: IndexRow, project: Project, release_id: int, version: str) -> None:
    for f in files_of_release(tx.conn, release_id):
        _mark_deleted(tx, ix, f.relpath)
    tx.conn.execute(delete(schema.files).where(schema.files.c.release_id == release_id,
                                               schema.files.c.rel == "toxresult"))
    tx.conn.execute(delete(schema.files).where(schema.files.c.release_id == release_id))
    tx.conn.execute(delete(schema.releases).where(schema.releases.c.id == release_id))
    tx.record("release", index=ix.fullname, project=project.name, version=version, op="delete")
    left = tx.conn.execute(select(func.count()).select_from(schema.releases)
                           .where(schema.releases.c.project_id == project.id)).scalar()
    if not left:
        tx.conn.execute(delete(schema.projects).where(schema.projects.c.id == project.id))
        tx.record("project", index=ix.fullname, project=project.name, op="delete")


def remove_project(tx: WriteTx, ix: IndexRow, project: Project) -> None:
    for rel in list_releases(tx.conn, project.id):
        remove_release(tx, ix, project, rel.id, rel.version)
    tx.conn.execute(delete(schema.projects).where(schema.projects.c.id == project.id))
    tx.record("project", index=ix.fullname, project=project.name, op="delete")


def deleted_at(conn: Connection, serial: int) -> list[tuple[str, str, str]]:
    """(user, index, relpath) of the files deleted by the commit at ``serial`` (the static
    view removes them: a release or project deletion names no file in its change record)."""
    d, ix = schema.deleted_files, schema.indexes
    rows = conn.execute(select(ix.c.user, ix.c.name, d.c.relpath).join(ix, ix.c.id == d.c.index_id)
                        .where(d.c.serial == serial))
    return [(r.user, r.name, r.relpath) for r in rows]


def was_deleted(conn: Connection, index_id: int, relpath: str) -> bool:
    return conn.execute(select(schema.deleted_files.c.serial).where(
        schema.deleted_files.c.index_id == index_id, schema.deleted_files.c.relpath == relpath)).first() is not None
