"""Derived data for search and "used by": one document and one dependency list per project.

For every (stage index, project) we keep the newest release's name, summary
and description in a full-text index (SQLite FTS5, or a PostgreSQL tsvector
with a GIN index), and the project names its ``Requires-Dist`` names. It is
derived data: the tables are created here (not by migrations), kept current
by a commit listener, and rebuilt or caught up from the changelog by a
background thread at start-up, so start-up itself does no work.

All writes happen on one worker thread fed by the commit listener; readers
that need read-your-writes (a search right after an upload) wait briefly for
the worker to reach the current serial.
"""
from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from devpi.server.packaging.names import normalize_name, version_key
from devpi.server.store import catalog, schema
from devpi.server.store.storage import kv_get, loads
from sqlalchemy import func, select, text

log = logging.getLogger("devpi.web.search")
FORMAT = "4"  # bump to force a rebuild when what is stored changes
# PostgreSQL advisory lock key for the derived tables' writers (``--workers N`` or several
# servers share one database, and each process follows every commit): arbitrary, fixed.
WRITER_LOCK = 0x64657670_69776562  # "devpiweb"
MAX_DESCRIPTION = 100_000  # characters indexed per description (PostgreSQL caps a tsvector at 1 MB)
REPLAY_LIMIT = 5000  # changelog entries to replay before a full rebuild is cheaper

SQLITE_DDL = [
    "CREATE TABLE IF NOT EXISTS web_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS web_docs (id INTEGER PRIMARY KEY, index_name TEXT NOT NULL, "
    "project TEXT NOT NULL, display_name TEXT NOT NULL, version TEXT NOT NULL, summary TEXT NOT NULL, "
    "updated REAL NOT NULL, UNIQUE (index_name, project))",
    "CREATE VIRTUAL TABLE IF NOT EXISTS web_fts USING fts5(name, summary, description, "
    "tokenize = 'porter unicode61')",
    "CREATE TABLE IF NOT EXISTS web_deps (index_name TEXT NOT NULL, project TEXT NOT NULL, "
    "dep TEXT NOT NULL, version TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS web_deps_dep ON web_deps (dep)",
    "CREATE INDEX IF NOT EXISTS web_deps_project ON web_deps (index_name, project)",
]
PG_DDL = [
    "CREATE TABLE IF NOT EXISTS web_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS web_docs (id BIGSERIAL PRIMARY KEY, index_name TEXT NOT NULL, "
    "project TEXT NOT NULL, display_name TEXT NOT NULL, version TEXT NOT NULL, summary TEXT NOT NULL, "
    "description TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL, tsv TSVECTOR NOT NULL, "
    "UNIQUE (index_name, project))",
    "CREATE INDEX IF NOT EXISTS web_docs_tsv ON web_docs USING GIN (tsv)",
    "CREATE TABLE IF NOT EXISTS web_deps (index_name TEXT NOT NULL, project TEXT NOT NULL, "
    "dep TEXT NOT NULL, version TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS web_deps_dep ON web_deps (dep)",
    "CREATE INDEX IF NOT EXISTS web_deps_project ON web_deps (index_name, project)",
]
PG_TSV = ("setweight(to_tsvector('simple', :tsname), 'A') || setweight(to_tsvector('english', :summary), 'B') "
          "|| setweight(to_tsvector('english', :description), 'C')")
_WORD = re.compile(r"\w+", re.UNICODE)
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass
class Hit:
    index: str
    project: str
    display_name: str
    version: str
    summary: str
    snippet: str  # plain text with \x02 ... \x03 around matched words
    rank: float


@dataclass
class Doc:
    index: str
    project: str
    display_name: str
    version: str
    summary: str
    description: str
    deps: list[str]
    updated: float


def dep_names(requires_dist: list[str] | None) -> list[str]:
    """Normalised project names a release requires (extras and markers included)."""
    out: list[str] = []
    for req in requires_dist or []:
        m = _REQ_NAME.match(str(req))
        if m:
            name = normalize_name(m.group(1))
            if name not in out:
                out.append(name)
    return out


def name_words(name: str) -> str:
    """The name as words too, so "my-tool" is found by "tool" and by "my-tool"."""
    return f"{name} {' '.join(_WORD.findall(name.replace('_', ' ')))}"


def project_doc(conn: Any, ix: catalog.IndexRow, project: catalog.Project) -> Doc | None:
    """Only the newest release's metadata is parsed: parsing every release's made each
    upload cost O(versions) here (80 ms of CPU per upload at 2,000 versions)."""
    rel = schema.releases
    rows = conn.execute(select(rel.c.id, rel.c.version, rel.c.created).where(rel.c.project_id == project.id)).all()
    if not rows:
        return None
    yanked = _yanked_releases(conn, project.id)
    newest = max(rows, key=lambda r: (r.id not in yanked, version_key(r.version)))
    md = loads(conn.execute(select(rel.c.metadata).where(rel.c.id == newest.id)).scalar()) or {}
    return Doc(ix.fullname, project.name, project.display_name, newest.version, str(md.get("summary") or ""),
               str(md.get("description") or "")[:MAX_DESCRIPTION], dep_names(md.get("requires_dist")),
               max(r.created for r in rows))


def _yanked_releases(conn: Any, project_id: int) -> set[int]:
    """Releases whose release files are all yanked: the "latest" an index page shows is
    the newest release one can install, as on the project page (only if every release is
    yanked is the newest of them shown)."""
    f, rel = schema.files, schema.releases
    rows = conn.execute(select(f.c.release_id).join(rel, rel.c.id == f.c.release_id)
                        .where(rel.c.project_id == project_id, f.c.rel == "releasefile")
                        .group_by(f.c.release_id).having(func.count(f.c.yanked) == func.count(f.c.id))).all()
    return {r.release_id for r in rows}


def project_doc_at(conn: Any, ix: catalog.IndexRow, project: catalog.Project, version: str,
                   updated: float) -> Doc | None:
    """The doc when the newest version is already known (uploads only add): no scan of all versions."""
    rel = schema.releases
    row = conn.execute(select(rel.c.metadata, rel.c.created).where(
        rel.c.project_id == project.id, rel.c.version == version)).first()
    if row is None:
        return project_doc(conn, ix, project)
    md = loads(row.metadata) or {}
    return Doc(ix.fullname, project.name, project.display_name, version, str(md.get("summary") or ""),
               str(md.get("description") or "")[:MAX_DESCRIPTION], dep_names(md.get("requires_dist")),
               max(updated, row.created))


class SearchIndex:
    """Owns the derived tables and the worker thread that keeps them current."""

    def __init__(self, core: Any):
        self.core = core
        self.storage = core.storage
        self.is_sqlite = core.storage.is_sqlite
        self.queue: queue.Queue = queue.Queue()
        self.serial = -1  # the changelog serial the derived data reflects
        self.ready = threading.Event()
        self.failed: str | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        self.core.change_listeners.append(self._on_commit)
        self._thread = threading.Thread(target=self._run, name="devpi-web-search", daemon=True)
        self._thread.start()

    def _on_commit(self, serial: int, changes: list[dict]) -> None:
        self.queue.put((serial, changes))

    def _run(self) -> None:
        try:
            self._prepare()
        except Exception as e:  # search degrades, pages still work
            log.exception("search index could not be prepared")
            self.failed = str(e)
            self.ready.set()
            return
        self.ready.set()
        while True:
            serial, changes = self.queue.get()
            batch = [(serial, changes)]
            while not self.queue.empty() and len(batch) < 500:
                batch.append(self.queue.get_nowait())
            try:
                self._apply(batch)
            except Exception:
                log.exception("search index update failed; rebuilding")
                try:
                    self.rebuild()
                except Exception:
                    log.exception("search index rebuild failed")

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """A write connection; on SQLite without fsync at commit.

        Derived data may lose its last commits in a power failure: the
        stored serial is lost with them, and the start-up catch-up replays
        those serials from the changelog. Not waiting for the disk keeps an
        upload's indexing (and the page that waits for it) fast. The
        connection goes back to the pool with the server's setting.
        """
        with self.storage.engine.connect() as conn:
            conn = conn.execution_options(devpi_write=True)
            raw = conn.connection.dbapi_connection if self.is_sqlite else None
            before = None
            if raw is not None:
                before = int(raw.execute("PRAGMA synchronous").fetchone()[0])
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                yield conn
            finally:
                if raw is not None and before is not None:
                    raw.execute(f"PRAGMA synchronous={before}")

    def _lock_writers(self, conn: Any) -> None:
        """Serialise this transaction with the other processes' writers of the derived tables.

        Every process follows every commit, so with several processes on one PostgreSQL
        database two of them would apply the same change at once (both delete, both insert:
        a unique violation). The lock is transaction-scoped: the commit lets it go. On
        SQLite the write transaction (``BEGIN IMMEDIATE``) already serialises them.
        """
        if not self.is_sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITER_LOCK})

    def _applied_serial(self, conn: Any) -> int | None:
        """The serial the stored derived data reflects, read inside the writer's transaction."""
        row = conn.execute(text("SELECT value FROM web_state WHERE key = 'serial'")).first()
        return int(row[0]) if row else None

    def _stored_state(self) -> dict[str, str]:
        with self.storage.engine.connect() as conn:
            try:
                state = dict(conn.execute(text("SELECT key, value FROM web_state")).all())
            except Exception:  # no table yet
                state = {}
            conn.rollback()
        return state

    def _prepare(self) -> None:
        ddl = SQLITE_DDL if self.is_sqlite else PG_DDL
        state = self._stored_state()
        if state and state.get("format") != FORMAT:  # stored in an older shape: start over
            with self._write() as conn, conn.begin():
                self._lock_writers(conn)
                for table in ("web_fts", "web_docs", "web_deps", "web_state"):
                    if table != "web_fts" or self.is_sqlite:
                        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        for attempt in range(3):
            try:
                with self._write() as conn, conn.begin():
                    for stmt in ddl:
                        conn.exec_driver_sql(stmt)
                break
            except Exception:
                if attempt == 2:  # concurrent CREATE IF NOT EXISTS on PostgreSQL can race once
                    raise
        state = self._stored_state()
        stored = int(state["serial"]) if state.get("format") == FORMAT and "serial" in state else None
        if stored is None:
            self.rebuild()
            return
        with self.storage.read() as conn:
            rows = conn.execute(select(schema.changelog.c.serial, schema.changelog.c.changes)
                                .where(schema.changelog.c.serial > stored)
                                .order_by(schema.changelog.c.serial).limit(REPLAY_LIMIT + 1)).all()
        if len(rows) > REPLAY_LIMIT:
            self.rebuild()
            return
        import json

        self._set_serial(stored)
        if rows:
            self._apply([(r.serial, json.loads(r.changes)) for r in rows])

    def _set_serial(self, serial: int) -> None:
        with self._cond:
            self.serial = max(self.serial, serial)
            self._cond.notify_all()

    def wait_current(self, timeout: float = 5.0) -> bool:
        """Wait until every commit this process has seen is reflected (read-your-writes)."""
        target = self.storage.current_serial
        if not self.ready.wait(timeout):
            return False
        with self._cond:
            return self._cond.wait_for(lambda: self.serial >= target or self.failed is not None, timeout)

    # -- writing -------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Everything from scratch, from one consistent snapshot."""
        docs: list[Doc] = []
        with self.storage.read() as conn:
            serial = int(kv_get(conn, "serial") or -1)
            for ix in catalog.list_indexes(conn):
                if ix.type != "stage":
                    continue
                for prow in conn.execute(select(schema.projects).where(schema.projects.c.index_id == ix.id)):
                    project = catalog.Project(prow.id, prow.index_id, prow.name, prow.display_name)
                    doc = project_doc(conn, ix, project)
                    if doc:
                        docs.append(doc)
        with self._write() as conn, conn.begin():
            self._lock_writers(conn)
            conn.exec_driver_sql("DELETE FROM web_deps")
            conn.exec_driver_sql("DELETE FROM web_docs")
            if self.is_sqlite:
                conn.exec_driver_sql("DELETE FROM web_fts")
            for doc in docs:
                self._insert(conn, doc)
            self._store_state(conn, serial)
        log.info("search index rebuilt: %d projects at serial %d", len(docs), serial)
        self._set_serial(serial)

    def _apply(self, batch: list[tuple[int, list[dict]]]) -> None:
        dirty: set[tuple[str, str]] = set()
        dropped: set[str] = set()
        touched: dict[tuple[str, str], set[str]] = {}  # versions added per project in this batch
        rescan: set[tuple[str, str]] = set()  # something was removed: find the newest the slow way
        for _serial, changes in batch:
            for c in changes:
                ixname = c.get("index")
                if not ixname:
                    continue
                if c.get("kind") == "index" and c.get("op") == "delete":
                    dropped.add(ixname)
                    dirty = {d for d in dirty if d[0] != ixname}
                elif c.get("project"):
                    key = (ixname, c["project"])
                    dirty.add(key)
                    if c.get("op") == "delete" or not c.get("version") or c.get("kind") == "yank":
                        rescan.add(key)
                    else:
                        touched.setdefault(key, set()).add(c["version"])
        serial = max(s for s, _ in batch)
        with self._write() as conn, conn.begin():
            self._lock_writers(conn)
            applied = self._applied_serial(conn)
            if applied is not None and applied >= serial:  # another process got there first
                self._set_serial(serial)
                return
            for ixname in dropped:
                self._delete_index(conn, ixname)
            indexes = {ix.fullname: ix for ix in catalog.list_indexes(conn)}
            for ixname, name in sorted(dirty):
                previous = self._stored_version(conn, ixname, name)
                self._delete(conn, ixname, name)
                ix = indexes.get(ixname)
                if ix is None or ix.type != "stage":
                    continue
                project = catalog.get_project(conn, ix.id, name)
                if project is None:
                    doc = None
                elif previous is not None and (ixname, name) not in rescan:
                    newest = max(touched.get((ixname, name), set()) | {previous[0]}, key=version_key)
                    doc = project_doc_at(conn, ix, project, newest, previous[1])
                else:
                    doc = project_doc(conn, ix, project)
                if doc:
                    self._insert(conn, doc)
            self._store_state(conn, serial)
        self._set_serial(serial)

    def _stored_version(self, conn: Any, ixname: str, project: str) -> tuple[str, float] | None:
        row = conn.execute(text("SELECT version, updated FROM web_docs WHERE index_name = :i AND project = :p"),
                           {"i": ixname, "p": project}).first()
        return (row[0], float(row[1])) if row else None

    def _store_state(self, conn: Any, serial: int) -> None:
        for key, value in (("serial", str(serial)), ("format", FORMAT)):
            if self.is_sqlite:
                conn.execute(text("INSERT OR REPLACE INTO web_state (key, value) VALUES (:k, :v)"),
                             {"k": key, "v": value})
            else:
                conn.execute(text("INSERT INTO web_state (key, value) VALUES (:k, :v) "
                                  "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"),
                             {"k": key, "v": value})

    def _delete(self, conn: Any, ixname: str, project: str) -> None:
        args = {"i": ixname, "p": project}
        if self.is_sqlite:
            conn.execute(text("DELETE FROM web_fts WHERE rowid IN "
                              "(SELECT id FROM web_docs WHERE index_name = :i AND project = :p)"), args)
        conn.execute(text("DELETE FROM web_docs WHERE index_name = :i AND project = :p"), args)
        conn.execute(text("DELETE FROM web_deps WHERE index_name = :i AND project = :p"), args)

    def _delete_index(self, conn: Any, ixname: str) -> None:
        args = {"i": ixname}
        if self.is_sqlite:
            conn.execute(text("DELETE FROM web_fts WHERE rowid IN "
                              "(SELECT id FROM web_docs WHERE index_name = :i)"), args)
        conn.execute(text("DELETE FROM web_docs WHERE index_name = :i"), args)
        conn.execute(text("DELETE FROM web_deps WHERE index_name = :i"), args)

    def _insert(self, conn: Any, doc: Doc) -> None:
        args = {"i": doc.index, "p": doc.project, "d": doc.display_name, "v": doc.version, "u": doc.updated,
                "summary": doc.summary, "description": doc.description,
                "tsname": name_words(doc.display_name)}
        if self.is_sqlite:
            rowid = conn.execute(text("INSERT INTO web_docs (index_name, project, display_name, version, summary, "
                                      "updated) VALUES (:i, :p, :d, :v, :summary, :u)"), args).lastrowid
            conn.execute(text("INSERT INTO web_fts (rowid, name, summary, description) "
                              "VALUES (:rowid, :tsname, :summary, :description)"), {**args, "rowid": rowid})
        else:
            conn.execute(text("INSERT INTO web_docs (index_name, project, display_name, version, summary, "
                              f"description, updated, tsv) VALUES (:i, :p, :d, :v, :summary, :description, :u, {PG_TSV})"),
                         args)
        for dep in doc.deps:
            conn.execute(text("INSERT INTO web_deps (index_name, project, dep, version) VALUES (:i, :p, :dep, :v)"),
                         {**args, "dep": dep})

    # -- reading ---------------------------------------------------------------------------
    def search(self, query: str, allowed: set[str], limit: int = 50, offset: int = 0) -> tuple[list[Hit], int]:
        """Ranked hits on the allowed indexes, and how many there are in all."""
        words = [w.lower() for w in _WORD.findall(query)][:12]
        if not words or self.failed:
            return [], 0
        self.wait_current()
        if self.is_sqlite:
            match = " AND ".join(f'"{w}"*' for w in words)
            sql = ("SELECT d.index_name, d.project, d.display_name, d.version, d.summary, "
                   "snippet(web_fts, 2, char(2), char(3), ' … ', 24), "
                   "bm25(web_fts, 10.0, 4.0, 1.0) AS rank "
                   "FROM web_fts JOIN web_docs d ON d.id = web_fts.rowid "
                   "WHERE web_fts MATCH :q ORDER BY rank")
            params: dict[str, Any] = {"q": match}
        else:
            tsq = " & ".join(f"{w}:*" for w in words)
            sql = ("SELECT index_name, project, display_name, version, summary, "
                   "ts_headline('english', left(description, 20000), to_tsquery('english', :q), "
                   "'StartSel=\x02, StopSel=\x03, MaxWords=30, MinWords=12, MaxFragments=2, "
                   "FragmentDelimiter=\" … \"'), "
                   "-ts_rank_cd(tsv, to_tsquery('english', :q)) AS rank "
                   "FROM web_docs WHERE tsv @@ to_tsquery('english', :q) ORDER BY rank")
            params = {"q": tsq}
        with self.storage.engine.connect() as conn:
            rows = conn.execute(text(sql), params).all()
            conn.rollback()
        exact = normalize_name(query.strip())
        hits = [Hit(r[0], r[1], r[2], r[3], r[4], r[5] or "", float(r[6])) for r in rows if r[0] in allowed]
        hits.sort(key=lambda h: (h.project != exact, h.rank))
        return hits[offset:offset + limit], len(hits)

    def index_projects(self, ixname: str) -> list[tuple[str, str, str, str, float]] | None:
        """(project, display name, newest version, summary, updated) of an index, by name; None if unknown."""
        if self.failed or not self.wait_current(2.0):
            return None
        with self.storage.engine.connect() as conn:
            rows = conn.execute(text("SELECT project, display_name, version, summary, updated FROM web_docs "
                                     "WHERE index_name = :i ORDER BY project"), {"i": ixname}).all()
            conn.rollback()
        return [tuple(r) for r in rows]

    def used_by(self, project: str, allowed: set[str]) -> list[tuple[str, str, str]]:
        """(index, project, version) of projects whose newest release requires project."""
        if self.failed:
            return []
        self.wait_current()
        with self.storage.engine.connect() as conn:
            rows = conn.execute(text("SELECT d.index_name, d.project, d.version FROM web_deps d "
                                     "WHERE d.dep = :dep ORDER BY d.project, d.index_name"),
                                {"dep": normalize_name(project)}).all()
            conn.rollback()
        return [(r[0], r[1], r[2]) for r in rows if r[0] in allowed and r[1] != normalize_name(project)]
