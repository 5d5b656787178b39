"""What "non-volatile" promises, in one place: what was released stays as it was.

On an index with ``volatile=False``:

* a file name keeps its bytes: another upload of the same name with other bytes
  is 409, the identical bytes are a no-op success (as the original devpi);
  that holds for release files and documentation zips, and also for a name
  whose file was deleted (with ``force``) unless the uploader is the index
  owner (or root): an ``acl_upload`` member cannot bring back other bytes
  under a released name;
* projects, releases and files are deleted only with ``force`` and only by the
  index owner, root or a ``--restrict-modify`` admin, never by an
  ``acl_upload`` member;
* the metadata of a registered release is not rewritten: ``:action=submit``
  that would change a stored value is 409, and the metadata a later file
  upload carries only fills keys that were empty.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..accounts.auth import Identity
from ..api.httpkit import APIError
from ..store import schema
from ..store.catalog import FileRow, IndexRow, file_relpath


def is_nonvolatile(ix: IndexRow) -> bool:
    return not ix.config.get("volatile", True)


def check_delete(core: Any, ident: Identity | None, ix: IndexRow, what: str, force: bool,
                 without_force: str | None = None) -> None:
    """Raise 403 unless ``ident`` may delete ``what`` on ``ix`` (acl checks come first).

    ``without_force``: the 403 text when ``force`` is missing, where the original devpi has
    its own wording that clients show (default "cannot delete <what> on non-volatile index")."""
    if not is_nonvolatile(ix):
        return
    if not force:
        raise APIError(403, without_force or f"cannot delete {what} on non-volatile index {ix.fullname}")
    if not core.may_delete_released(ident, ix):
        raise APIError(403, f"only the owner of non-volatile index {ix.fullname} (or root) may delete "
                            f"{what} there")


def _is_owner(core: Any, who: str | None, ix: IndexRow) -> bool:
    return who is not None and core.may_delete_released(Identity(who), ix)


def check_file_unchanged(core: Any, conn: Connection, who: str | None, ix: IndexRow, filename: str,
                         sha256: str, existing: list[FileRow]) -> None:
    """Raise 409 when storing ``filename`` with these bytes would change a released file.

    ``existing``: the files of that name on the release now. Identical bytes are left to
    the caller (a no-op success)."""
    if not is_nonvolatile(ix):
        return
    if any(old.sha256 != sha256 for old in existing):
        raise APIError(409, f"{filename} already exists in non-volatile index {ix.fullname}")
    if existing or _is_owner(core, who, ix):
        return
    same_bytes = file_relpath(sha256, filename)
    q = (select(schema.deleted_files.c.relpath)
         .where(schema.deleted_files.c.index_id == ix.id,
                schema.deleted_files.c.relpath.endswith("/" + filename, autoescape=True),
                schema.deleted_files.c.relpath != same_bytes)
         .limit(1))
    if conn.execute(q).first() is not None:
        raise APIError(409, f"{filename} was released on non-volatile index {ix.fullname} with other "
                            "bytes; only the index owner may upload a different file under that name")


def check_metadata_unchanged(ix: IndexRow, stored: dict[str, Any], sent: dict[str, Any], name: str,
                             version: str) -> None:
    """``:action=submit`` for a registered release of a non-volatile index: 409 if it would
    change a stored value (an identical or only-adding submit passes)."""
    if not is_nonvolatile(ix):
        return
    changed = sorted(k for k, v in sent.items()
                     if k not in ("name", "version") and v not in ("", [], None)
                     and stored.get(k) not in ("", [], None) and stored.get(k) != v)
    if changed:
        raise APIError(409, f"{name} {version} is registered on non-volatile index {ix.fullname}; its "
                            f"metadata is fixed (would change: {', '.join(changed)})")


def metadata_additions(ix: IndexRow, stored: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """What a later upload may write into a release's metadata: on a non-volatile index only
    keys that are empty now (a wheel after the sdist adds, never rewrites)."""
    if not is_nonvolatile(ix):
        return sent
    return {k: v for k, v in sent.items() if stored.get(k) in ("", [], None)}
