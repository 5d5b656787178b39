"""A mirror on a replica: its pages and files come from the primary's mirror, never from upstream.

The primary's mirror applies its upstream policy, hash checks and the rest when it fetches;
a replica that asked the upstream itself would bypass all of that (and be a second client
of an upstream that may allow one). So on a replica ``core.mirror_source`` is set (by
server/replication/, which this module does not import) and a mirror index:

- takes a missing or expired page as the primary's stored row (``MirrorSource.page``): the
  primary fetches it from its upstream if it must; the replica keeps the same row, so its
  page lists the same files under the same paths;
- takes a missing file as the primary's stored row (``MirrorSource.file``: the primary
  downloads and verifies it if it must), then its bytes by sha256 (``MirrorSource.blob``,
  hash-checked while written) and records the row only once the bytes are stored;
- serves what it holds, like ``--offline``, while the primary is unreachable.

The rows the primary cached on its own reach the replica through the cache sync
(server/replication/mirror_sync.py), which calls ``synced_*`` here so that what the
mirror keeps in memory follows.

The other half, for the primary: ``page_row`` and ``file_row`` make the rows it answers with.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Protocol

from ..api.httpkit import APIError

if TYPE_CHECKING:
    from .repository import MirrorRepository, StoredFile

PAGE_COLUMNS = ("project", "url", "links", "etag", "last_modified", "serial", "fetched")
FILE_COLUMNS = ("relpath", "project", "filename", "sha256", "size", "created", "url")
LIST_COLUMNS = ("names", "etag", "serial", "fetched")
STALE_RECHECK = 60.0  # seconds a page the primary itself could not refresh is kept before asking again


class MirrorSource(Protocol):
    """What a replica's mirror asks its primary (server/replication/mirror_source.py)."""

    def reachable(self) -> bool:
        """False while the primary cannot be reached: serve what is held, fetch nothing."""

    def page(self, index: str, project: str) -> dict[str, Any] | None:
        """The primary's page row (PAGE_COLUMNS) of ``project`` in mirror ``index``, fetched
        there if need be; None if its upstream has no such project. APIError otherwise."""

    def file(self, index: str, relpath: str) -> dict[str, Any]:
        """The primary's file row (FILE_COLUMNS), downloaded there if need be. APIError otherwise."""

    def blob(self, sha256: str, size: int) -> None:
        """The file's bytes into the blob store, hash-checked. APIError otherwise."""


# -- on a replica ------------------------------------------------------------------------------
def fetch_page(repo: MirrorRepository, name: str) -> Any:
    """``MirrorRepository._fetch_page`` on a replica: the primary's row (run single-flight)."""
    from .repository import UpstreamError

    source = repo.source
    assert source is not None
    try:
        row = source.page(repo.fullname, name)
    except APIError as e:
        status = 503 if e.status == 503 else 404 if e.status == 404 else 502
        raise UpstreamError(f"the primary: {e.message}", status=status) from None
    if row is None:
        repo._missing.put(name, time.monotonic() + 60.0)
        if repo._page(name) is not None:
            repo._forget_page(name)
            repo.core.page_cache.drop_project(name)
        return None
    page = repo._make_page(name, row["url"], json.loads(row["links"]), row["etag"], row["last_modified"],
                           row["serial"], row["fetched"])
    # a page the primary could not refresh either: kept a while, not asked for at every request
    page.fresh_until = max(page.fresh_until, time.time() + min(repo.expiry, STALE_RECHECK))
    with repo._lock:
        old = repo._pages.pop(name, None)
        repo._pages.put(name, page, page.weight)
        was_missing = repo._missing.pop(name, None) is not None
    if old is not None or was_missing:
        repo.core.page_cache.drop_project(name)
    repo.store.save_page(name, row["url"], json.loads(row["links"]), row["etag"], row["last_modified"],
                         row["serial"], row["fetched"])
    return page


def fetch_file(repo: MirrorRepository, relpath: str) -> StoredFile:
    """A file the replica does not hold: the primary's row and bytes (one fetch however many ask)."""
    return repo._flights.do(("primary-file", relpath), lambda: _fetch_file(repo, relpath))


def _fetch_file(repo: MirrorRepository, relpath: str) -> StoredFile:
    source = repo.source
    assert source is not None
    stored = repo._stored(relpath)  # a request that shared this flight's predecessor stored it
    if stored is not None:
        return stored
    row = source.file(repo.fullname, relpath)
    if row["relpath"] != relpath:
        raise APIError(502, f"the primary answered for {row['relpath'][:200]!r}, not {relpath!r}")
    expected = _page_sha256(repo, relpath)
    if expected is not None and expected != row["sha256"]:
        raise APIError(502, f"the primary's {relpath} has sha256 {row['sha256']}, this replica's page says "
                            f"{expected}: not served")
    source.blob(row["sha256"], row["size"])  # hash-checked; committed before the row names it
    with repo._lock:
        stored = repo._remember_file(relpath, row["sha256"], row["filename"], row["size"])
    repo.store.save_file(relpath, row["project"], row["filename"], row["sha256"], row["size"], row["created"],
                         row["url"])
    return stored


def _page_sha256(repo: MirrorRepository, relpath: str) -> str | None:
    """The sha256 the replica's copy of the page gives for ``relpath`` (None: no page in memory)."""
    target = repo._target(relpath, fetch_page=False)
    return target[1] if target is not None and not relpath.endswith(".metadata") else None


def synced_page(repo: MirrorRepository, name: str) -> None:
    """The cache sync stored a newer row of page ``name``: forget the copy in memory."""
    with repo._lock:
        repo._pages.pop(name, None)
        repo._missing.pop(name, None)
    repo.core.page_cache.drop_project(name)


def synced_file(repo: MirrorRepository, relpath: str) -> None:
    with repo._lock:
        repo._files.pop(relpath, None)


def synced_list(repo: MirrorRepository) -> None:
    with repo._lock:
        repo._names_packed = None
        repo._names_loaded = False
    repo.core.page_cache.drop_project("")


# -- on the primary -------------------------------------------------------------------------
def page_row(repo: MirrorRepository, name: str) -> dict[str, Any] | None:
    """The page of ``name`` as this mirror holds it (fetched or revalidated if it must be, a stale
    copy if upstream fails), None if upstream has no such project. APIError (502) if there is none."""
    from ..packaging.names import is_project_name, normalize_name

    if not is_project_name(name):
        raise APIError(400, f"not a project name: {name[:100]!r}")
    name = normalize_name(name)
    if repo.get_project(name) is None:
        return None
    page = repo._page(name, look=True)
    if page is None:
        return None
    return {"project": name, "url": page.url, "links": json.dumps(page.raw, separators=(",", ":")),
            "etag": page.etag, "last_modified": page.last_modified, "serial": page.serial,
            "fetched": page.fetched}


def file_row(repo: MirrorRepository, relpath: str, timeout: float) -> dict[str, Any]:
    """The file at ``relpath``, downloaded and verified now if this mirror does not hold it. APIError."""
    stored = repo.stored_file(relpath, timeout)
    repo.store.flush()  # the row of a download that just finished
    row = repo.store.load_file(relpath)
    if row is not None and row.sha256 == stored.sha256:
        return {c: getattr(row, c) for c in FILE_COLUMNS}
    target = repo._target(relpath, fetch_page=False)
    if target is None:
        raise APIError(404, f"no such file: {repo.fullname}/{relpath}")
    return {"relpath": relpath, "project": target[3], "filename": stored.filename, "sha256": stored.sha256,
            "size": stored.size, "created": stored.created, "url": target[0]}
