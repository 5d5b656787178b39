"""What the pages show, read through the server core: indexes, projects, releases, files.

Pages need more than the devpi JSON gives (file sizes, upload times, which
stage a version comes from), so this reads the catalog directly, walking the
same resolution order and dependency-confusion guard as the simple pages and
``api.projects.project_versions``. All stage reads of one page happen in
one read transaction, so a page never mixes two serials.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devpi.server.packaging.names import version_key
from devpi.server.store import catalog, schema
from devpi.server.store.catalog import IndexRow
from sqlalchemy import func, select


@dataclass
class FileInfo:
    id: int | None
    filename: str
    path: str  # server-root-relative URL path, e.g. "alice/dev/+f/abc/def/pkg-1.0.tar.gz"
    rel: str
    sha256: str | None
    size: int | None
    upload_time: float | None
    yanked: str | None
    stage: str
    for_file_id: int | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class VersionInfo:
    version: str
    stage: str  # the index the version comes from (first in resolution order)
    metadata: dict[str, Any]
    files: list[FileInfo]  # release files
    doczip: FileInfo | None = None
    toxresults: list[FileInfo] = field(default_factory=list)
    from_mirror: bool = False
    created: float | None = None

    @property
    def yanked(self) -> bool:
        return bool(self.files) and all(f.yanked is not None for f in self.files)

    @property
    def upload_time(self) -> float | None:
        times = [f.upload_time for f in self.files if f.upload_time]
        return min(times) if times else self.created


@dataclass
class ProjectInfo:
    name: str
    display_name: str
    versions: list[VersionInfo]  # newest first
    notes: list[str] = field(default_factory=list)
    stale: bool = False

    def get(self, version: str) -> VersionInfo | None:
        for v in self.versions:
            if v.version == version:
                return v
        return None

    @property
    def latest(self) -> VersionInfo | None:
        for v in self.versions:
            if not v.yanked:
                return v
        return self.versions[0] if self.versions else None

    def resolve_alias(self, version: str) -> VersionInfo | None:
        """devpi's aliases: "latest" (newest), "stable" (newest final release)."""
        if version == "latest":
            return self.latest
        if version == "stable":
            from packaging.version import InvalidVersion, Version

            for v in self.versions:
                try:
                    if not Version(v.version).is_prerelease and not v.yanked:
                        return v
                except InvalidVersion:
                    continue
            return self.latest
        return self.get(version)


def _stage_project(conn, member: IndexRow, name: str) -> tuple[str, list[VersionInfo]] | None:
    pf = catalog.project_files(conn, member.id, name, rel=None)
    if pf is None:
        return None
    out: dict[int, VersionInfo] = {}
    for rid, release in pf.releases.items():
        out[rid] = VersionInfo(release.version, member.fullname, release.metadata, [],
                               created=release.created)
    for f in pf.files:
        info = FileInfo(f.id, f.filename, f"{member.fullname}/{f.relpath}", f.rel, f.sha256, f.size,
                        f.created, f.yanked, member.fullname, f.for_file_id, f.log)
        v = out[f.release_id]
        if f.rel == "releasefile":
            v.files.append(info)
        elif f.rel == "doczip":
            v.doczip = info
        elif f.rel == "toxresult":
            v.toxresults.append(info)
    return pf.project.display_name, list(out.values())


def _mirror_project(core: Any, member: IndexRow, name: str) -> tuple[Any, list[VersionInfo]] | None:
    view = core.single_repository(member).get_project(name)
    if view is None:
        return None
    out: dict[str, VersionInfo] = {}
    for link in view.links:
        v = out.setdefault(link.version, VersionInfo(link.version, member.fullname,
                                                     {"name": view.name, "version": link.version}, [],
                                                     from_mirror=True))
        if link.requires_python:
            v.metadata["requires_python"] = link.requires_python
        v.files.append(FileInfo(None, link.filename, link.path, "releasefile", link.sha256, link.size,
                                link.upload_time, link.yanked, member.fullname))
    return view, list(out.values())


def load_project(core: Any, ix: IndexRow, name: str, reader: Any) -> ProjectInfo | None:
    """A project as seen from index ix by ``reader``: its versions across the part of the
    resolution order the reader may read (:func:`readable_order`), newest first."""
    order = core.resolution_order(ix) if ix.type == "stage" else [ix]
    readable = {m.fullname for m in readable_order(core, reader, ix)}
    whitelisted = core.whitelist_for(ix)
    versions: dict[str, VersionInfo] = {}
    display = name
    found = private = stale = False
    notes: list[str] = []
    with core.storage.read() as conn:
        stage_results = {m.fullname: _stage_project(conn, m, name) for m in order if m.type == "stage"}
    for member in order:
        if member.fullname not in readable:
            # shown nothing of, but a private stage holding the project still keeps the mirror's
            # releases of that name out, as on the simple pages (Core.repository)
            private = private or (member.type == "stage" and stage_results[member.fullname] is not None)
            continue
        if member.type == "mirror":
            if private and not whitelisted(name):
                notes.append(f"Releases from {member.fullname} are not shown: {name} is private on this "
                             "index and not in its mirror_whitelist.")
                continue
            got = _mirror_project(core, member, name)
            if got is None:
                continue
            view, found_versions = got
            stale = stale or view.stale
            notes.extend(view.notes)  # e.g. the upstream deleted the project: only what is cached is shown
        else:
            res = stage_results[member.fullname]
            if res is None:
                continue
            if not found:
                display = res[0]
            found_versions = res[1]
            private = True
        found = True
        for v in found_versions:
            versions.setdefault(v.version, v)
    if not found:
        return None
    ordered = sorted(versions.values(), key=lambda v: version_key(v.version), reverse=True)
    return ProjectInfo(name, display, ordered, notes, stale)


# -- listings -----------------------------------------------------------------------------
@dataclass
class ProjectRow:
    name: str
    display_name: str
    version: str
    summary: str
    updated: float


def _summary_column(core: Any):
    col = schema.releases.c.metadata
    if core.storage.is_sqlite:
        return func.json_extract(col, "$.summary")
    from sqlalchemy import JSON, cast

    return cast(cast(col, JSON), JSON)["summary"].as_string()


def index_projects(core: Any, ix: IndexRow) -> list[ProjectRow]:
    """The index's own projects with their newest version and its summary, sorted by name.

    One query over releases (summary extracted in SQL, never the whole
    description), newest version picked in Python with PEP 440 ordering.
    """
    p, r = schema.projects, schema.releases
    q = (select(p.c.name, p.c.display_name, r.c.version, r.c.created, _summary_column(core))
         .join(r, r.c.project_id == p.c.id).where(p.c.index_id == ix.id))
    best: dict[str, tuple] = {}
    with core.storage.read() as conn:
        rows = conn.execute(q).all()
    for name, display, version, created, summary in rows:
        key = version_key(version)
        cur = best.get(name)
        if cur is None or key > cur[0]:
            best[name] = (key, display, version, summary or "", created,
                          max(created, cur[4]) if cur else created)
        elif created > cur[5]:
            best[name] = (*cur[:5], created)
    return [ProjectRow(name, b[1], b[2], clip(b[3]), b[5]) for name, b in sorted(best.items())]


def clip(text: str, limit: int = 140) -> str:
    """Summaries in listings: one line, at most ``limit`` characters."""
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass
class Upload:
    project: str
    version: str
    filename: str
    path: str
    size: int
    created: float


def latest_uploads(core: Any, ix: IndexRow, limit: int = 15) -> list[Upload]:
    f, r, p = schema.files, schema.releases, schema.projects
    newest = (select(f.c.release_id, f.c.filename, f.c.relpath, f.c.size, f.c.created)
              .where(f.c.index_id == ix.id, f.c.rel == "releasefile")
              .order_by(f.c.created.desc()).limit(limit).subquery())  # pick 15 first, join only those
    q = (select(p.c.name, r.c.version, newest.c.filename, newest.c.relpath, newest.c.size, newest.c.created)
         .join(r, r.c.id == newest.c.release_id).join(p, p.c.id == r.c.project_id)
         .order_by(newest.c.created.desc()))
    with core.storage.read() as conn:
        return [Upload(n, v, fn, f"{ix.fullname}/{rp}", size, created)
                for n, v, fn, rp, size, created in conn.execute(q)]


def project_counts(core: Any) -> dict[int, int]:
    p = schema.projects
    with core.storage.read() as conn:
        return dict(conn.execute(select(p.c.index_id, func.count()).group_by(p.c.index_id)).all())


def list_users(core: Any) -> list[catalog.User]:
    with core.storage.read() as conn:
        return catalog.list_users(conn)


def get_user(core: Any, name: str) -> catalog.User | None:
    with core.storage.read() as conn:
        return catalog.get_user(conn, name)


def may_read(core: Any, reader: Any, ix: IndexRow) -> bool:
    """Whether ``reader`` (an Identity, None for anonymous) may learn anything of ``ix``:
    the server's rule (``Core.may_read``: root, the owner, else ``acl_read``), so a page
    never shows what the JSON API would refuse. One dict lookup and a list scan."""
    return bool(core.may_read(reader, ix))


def readable_order(core: Any, reader: Any, ix: IndexRow) -> list[IndexRow]:
    """The index's resolution order without the members ``reader`` may not read.

    The inheritance rule (doc/security.md): a public index built on a private base shows
    a non-reader nothing of that base, as if it were not among the bases; only the
    mirror guard (a project private on a stage hides the mirror's releases) still counts
    the hidden base, for every reader alike, as the simple pages do (Core.repository).
    """
    members = core.resolution_order(ix) if ix.type == "stage" else [ix]
    return [m for m in members if may_read(core, reader, m)]
