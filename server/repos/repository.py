"""Repositories as composable views: a stage, a mirror, and the merge of several.

An index's simple view is an object built from other views: ``MergedRepository``
walks its members in resolution order and applies the dependency-confusion
guard, knowing nothing of SQL or HTTP. A stage reads rows; a mirror (see
``mirror/repository.py``) reads its upstream cache. Everything a simple page needs is in
``ProjectView``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..packaging.names import version_key
from ..store import catalog
from ..store.catalog import IndexRow
from ..store.storage import Storage
from .namelists import merge_sorted

log = logging.getLogger("devpi.server")
MIRROR_MISS_MAX_AGE = 60.0  # seconds a merged page may be reused when a mirror base had nothing


@dataclass(frozen=True)
class Link:
    filename: str
    path: str  # server-root-relative, e.g. "alice/dev/+f/640/96140d0597c2f/pkg-1.0.tar.gz"
    version: str
    stage: str  # "alice/dev": the index this file lives on
    sha256: str | None = None
    requires_python: str | None = None
    yanked: str | None = None  # None: not yanked; "" or a reason
    core_metadata_sha256: str | None = None
    core_metadata: bool = False  # <path>.metadata is served even without a known hash (PEP 714 "true")
    size: int | None = None
    upload_time: float | None = None


@dataclass
class ProjectView:
    name: str
    links: list[Link]
    stale: bool = False  # served from a cache after an upstream failure
    last_serial: int | None = None  # upstream's X-PyPI-Last-Serial, for mirrors
    notes: list[str] = field(default_factory=list)
    max_age: float | None = None  # seconds a rendered page of this view may be reused (mirrors expire)

    @property
    def versions(self) -> list[str]:
        return sorted({link.version for link in self.links if link.version}, key=version_key)


class Repository(Protocol):
    fullname: str
    is_mirror: bool

    def get_project(self, name: str) -> ProjectView | None: ...

    def has_project(self, name: str) -> bool: ...

    def project_names(self) -> Iterable[str]: ...

    def project_name_chunks(self) -> Iterable[list[str]]:
        """The sorted, unique names as successive slices (see namelists): a mirror's list
        of hundreds of thousands is walked, never copied whole. The names are taken when
        this is called; the slices are made as they are read."""
        ...


class StageRepository:
    """Private uploads of one stage index, straight from the catalog.

    Which projects the stage has is kept in memory: a stage with ``root/pypi`` as a base
    is asked for every project an installer wants, nearly all of them not its own, and a
    read transaction per ask cost a cold page through such a stage a millisecond more
    than one straight from the mirror. ``generation`` changes whenever a commit touches
    this index (whichever process made it, see ``Core``); a names read that a commit may
    have overtaken is not trusted past that commit.
    """

    is_mirror = False

    def __init__(self, storage: Storage, index: IndexRow, generation: Callable[[], int]):
        self.storage = storage
        self.index = index
        self.fullname = index.fullname
        self._generation = generation
        self._names: tuple[int, frozenset[str]] | None = None  # (generation read at, names)

    def _may_have(self, name: str) -> bool:
        names = self._names
        current = self._generation()  # taken before the read: a commit during it renews again
        if names is None or names[0] != current:
            with self.storage.read() as conn:
                names = (current, frozenset(catalog.project_names(conn, self.index.id)))
            self._names = names
        return name in names[1]

    def get_project(self, name: str) -> ProjectView | None:
        if not self._may_have(name):
            return None
        with self.storage.read() as conn:
            pf = catalog.project_files(conn, self.index.id, name, with_metadata=False)
        if pf is None:
            return None
        links = []
        for f in pf.files:
            release = pf.releases[f.release_id]
            links.append(Link(
                filename=f.filename, path=f"{self.fullname}/{f.relpath}", version=release.version,
                stage=self.fullname, sha256=f.sha256,
                requires_python=release.requires_python, yanked=f.yanked,
                core_metadata_sha256=f.core_metadata_sha256, size=f.size, upload_time=f.created))
        return ProjectView(name, links)

    def has_project(self, name: str) -> bool:
        if not self._may_have(name):
            return False
        with self.storage.read() as conn:
            return catalog.get_project(conn, self.index.id, name) is not None

    def project_names(self) -> list[str]:
        with self.storage.read() as conn:
            return catalog.project_names(conn, self.index.id)

    def project_name_chunks(self) -> list[list[str]]:
        return [sorted(self.project_names())]


class EmptyRepository:
    """Stands in for a mirror when the server runs without the mirror part."""

    is_mirror = True

    def __init__(self, fullname: str):
        self.fullname = fullname

    def get_project(self, name: str) -> ProjectView | None:
        return None

    def has_project(self, name: str) -> bool:
        return False

    def project_names(self) -> list[str]:
        return []

    def project_name_chunks(self) -> list[list[str]]:
        return []


class MergedRepository:
    """The view of an index: its own files, then its bases', first file name wins.

    Mirrors come last. If any private member has the project, mirror members
    are not even asked for it (so private names never reach upstream) unless
    ``whitelisted(name)`` says the project may mix.
    """

    is_mirror = False

    def __init__(self, fullname: str, members: list[Repository], whitelisted: Callable[[str], bool],
                 guards: Iterable[Repository] = ()):
        """``guards``: private members this view leaves out (its reader may not read them)
        that still keep a project they hold from being mixed with a mirror's releases."""
        self.fullname = fullname
        self.members = [m for m in members if not m.is_mirror] + [m for m in members if m.is_mirror]
        self.whitelisted = whitelisted
        self.guards = list(guards)

    def get_project(self, name: str) -> ProjectView | None:
        seen: set[str] = set()
        links: list[Link] = []
        found = False
        private = False
        stale = False
        last_serial = None
        max_age: float | None = None
        notes: list[str] = []
        mirror_error: Exception | None = None
        guarded: bool | None = None
        for member in self.members:
            if member.is_mirror and not private and self.guards and not self.whitelisted(name):
                if guarded is None:
                    guarded = any(g.has_project(name) for g in self.guards)
                if guarded:
                    continue  # no note: it would tell of a project on an index this reader may not read
            if member.is_mirror and private and not self.whitelisted(name):
                notes.append(f"Because this project isn't in the mirror_whitelist, no releases from "
                             f"{member.fullname} are included.")
                continue
            try:
                view = member.get_project(name)
            except Exception as e:  # an upstream failure must not hide private releases
                if not member.is_mirror:
                    raise
                log.warning("%s: skipping %s for %r: %s", self.fullname, member.fullname, name,
                            getattr(e, "message", e))
                mirror_error = mirror_error or e
                stale = True  # not cached: the next request asks the mirror again
                continue
            if view is None:
                if member.is_mirror:  # upstream may get the project later: don't cache forever
                    max_age = MIRROR_MISS_MAX_AGE if max_age is None else min(max_age, MIRROR_MISS_MAX_AGE)
                continue
            found = True
            private = private or not member.is_mirror
            stale = stale or view.stale
            if view.last_serial is not None:
                last_serial = view.last_serial
            if view.max_age is not None:
                max_age = view.max_age if max_age is None else min(max_age, view.max_age)
            for link in view.links:
                if link.filename not in seen:
                    seen.add(link.filename)
                    links.append(link)
        if not found:
            if mirror_error is not None:  # nothing anywhere and a mirror failed: say so (502)
                raise mirror_error
            return None
        return ProjectView(name, links, stale=stale, last_serial=last_serial, notes=notes, max_age=max_age)

    def has_project(self, name: str) -> bool:
        return any(m.has_project(name) for m in self.members)

    def project_names(self) -> list[str]:
        return [name for chunk in self.project_name_chunks() for name in chunk]

    def project_name_chunks(self) -> Iterator[list[str]]:
        return merge_sorted([m.project_name_chunks() for m in self.members])

    def private_members(self) -> list[Repository]:
        return [m for m in self.members if not m.is_mirror]
