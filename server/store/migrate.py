"""Bring a database to the newest schema, cheaply when it already is.

Alembic is imported only when the stored revisions differ from the migration
files on disk, so a normal start-up costs one small query, not an Alembic
import and script scan.
"""
from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import inspect, text

from .storage import Storage

VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r'^revision\s*=\s*["\']([^"\']+)["\']', re.M)
_DOWN = re.compile(r'^down_revision\s*=\s*(.+)$', re.M)


class SchemaTooNew(Exception):
    """The database was written by a newer devpi: this one does not know its schema."""


def known_heads() -> set[str]:
    """Revisions no other migration builds on, read from the files (no Alembic import)."""
    revisions, downs = _read_revisions()
    return revisions - downs


def _read_revisions() -> tuple[set[str], set[str]]:
    revisions, downs = set(), set()
    for path in VERSIONS.glob("*.py"):
        src = path.read_text(encoding="utf-8")
        rev = _REVISION.search(src)
        if not rev:
            continue
        revisions.add(rev.group(1))
        down = _DOWN.search(src)
        if down:
            downs.update(re.findall(r'["\']([^"\']+)["\']', down.group(1)))
    return revisions, downs


def stored_heads(storage: Storage) -> set[str]:
    with storage.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return set()
        heads = {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
        conn.rollback()
        return heads


def ensure_schema(storage: Storage) -> bool:
    """Upgrade to all heads if needed; returns True when a migration ran.

    A database of a newer devpi is refused with a message saying so (there is no downgrade:
    an older devpi reads a newer server's data through ``devpi export``/``import`` only if
    the export format's version is one it knows)."""
    stored = stored_heads(storage)
    if stored == known_heads():
        return False
    unknown = stored - _read_revisions()[0]
    if unknown:
        raise SchemaTooNew(f"the database has schema revision {', '.join(sorted(unknown))}, written by a "
                           "newer devpi than this one; install that version again (devpi does not "
                           "downgrade a database)")
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(VERSIONS.parent))
    with storage.engine.begin() as conn:
        if not storage.is_sqlite:
            # Several processes may start at once on one database: one migrates, the others wait.
            conn.execute(text("SELECT pg_advisory_xact_lock(31410001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
    return True
