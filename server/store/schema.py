"""The SQL schema, in SQLAlchemy Core, shared by SQLite and PostgreSQL.

Versions and files are rows (not one growing value per project), so adding
the 2,000th version of a project costs what the 2nd did. JSON-shaped values
(configs, metadata, logs) are stored as text: both engines handle it the same,
and nothing queries inside them.

Changes to these tables go through an Alembic migration in ``migrations/``.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Small server-wide values: the current serial, the node uuid, the token secret.
kv = Table(
    "kv", metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

# One row per committed write transaction: the spine of consistency.
changelog = Table(
    "changelog", metadata,
    Column("serial", BigInteger, primary_key=True, autoincrement=False),
    Column("created", Float, nullable=False),
    Column("who", String(100)),
    Column("changes", Text, nullable=False),  # JSON list of {"kind": ..., ...}
)

users = Table(
    "users", metadata,
    Column("name", String(100), primary_key=True),
    Column("pwhash", String(400), nullable=False),
    Column("config", Text, nullable=False),  # JSON: email, title, description, custom_data
    Column("created", String(32), nullable=False),
    Column("modified", String(32), nullable=False),
)

indexes = Table(
    "indexes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user", String(100), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("type", String(20), nullable=False),
    Column("config", Text, nullable=False),  # JSON of the devpi index config keys
    UniqueConstraint("user", "name", name="uq_indexes_user_name"),
)

projects = Table(
    "projects", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("index_id", Integer, ForeignKey("indexes.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),  # PEP 503 normalised
    Column("display_name", String(200), nullable=False),
    Column("created", Float, nullable=False),
    UniqueConstraint("index_id", "name", name="uq_projects_index_name"),
)

releases = Table(
    "releases", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("version", String(200), nullable=False),
    Column("metadata", Text, nullable=False),  # JSON of the core metadata keys
    Column("created", Float, nullable=False),
    # Copied out of metadata (migration 0004): simple pages need it without parsing every description.
    Column("requires_python", String(200)),
    # PEP 440's canonical spelling (migration 0005), so finding "4.0.0" as a stored "4.0" is one
    # indexed look-up, not a parse of every version of the project. Not unique: a server dir
    # may hold "1.0" and "1.0.0" from before the look-up went by it (the oldest one wins).
    # Nullable only because SQLite cannot add a NOT NULL column to a filled table in place:
    # the migration fills every row and catalog.put_release sets it on every insert.
    Column("canonical_version", String(300)),
    UniqueConstraint("project_id", "version", name="uq_releases_project_version"),
)

files = Table(
    "files", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("index_id", Integer, ForeignKey("indexes.id", ondelete="CASCADE"), nullable=False),
    Column("release_id", Integer, ForeignKey("releases.id", ondelete="CASCADE"), nullable=False),
    Column("relpath", String(600), nullable=False),  # "+f/abc/def.../name" under the index URL
    Column("filename", String(300), nullable=False),
    Column("rel", String(20), nullable=False),  # releasefile | doczip | toxresult
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", Float, nullable=False),  # upload time (unix)
    Column("yanked", Text),  # NULL: not yanked; otherwise the reason (may be "")
    Column("core_metadata_sha256", String(64)),  # blob holding the wheel's METADATA (PEP 658)
    Column("for_file_id", Integer, ForeignKey("files.id", ondelete="CASCADE")),  # toxresult -> tested file
    Column("log", Text, nullable=False),  # JSON list of devpi log entries
    UniqueConstraint("index_id", "relpath", name="uq_files_index_relpath"),
)
Index("ix_files_release", files.c.release_id)
Index("ix_files_for_file", files.c.for_file_id)
Index("ix_releases_project", releases.c.project_id)
Index("ix_releases_canonical", releases.c.project_id, releases.c.canonical_version)

# Kept for the simple-page ETag of projects that were deleted (410 vs 404 on files).
deleted_files = Table(
    "deleted_files", metadata,
    Column("index_id", Integer, ForeignKey("indexes.id", ondelete="CASCADE"), nullable=False),
    Column("relpath", String(600), nullable=False),
    Column("serial", BigInteger, nullable=False),
    UniqueConstraint("index_id", "relpath", name="uq_deleted_files"),
)

__all__ = ["metadata", "kv", "changelog", "users", "indexes", "projects", "releases", "files",
           "deleted_files", "Boolean", "LargeBinary"]

# ---------------------------------------------------------------------------------------------
# Mirror cache (migration 0002, owned by mirror/repository.py). Not part of the changelog: it is a cache of
# upstream data, written without a serial, and survives restarts so an upstream outage is no
# outage here.

# One row per mirrored project page: upstream's links as JSON, with what revalidation needs.
mirror_pages = Table(
    "mirror_pages", metadata,
    Column("index_id", Integer, ForeignKey("indexes.id", ondelete="CASCADE"), primary_key=True),
    Column("project", String(200), primary_key=True),  # PEP 503 normalised
    Column("url", Text, nullable=False),  # the upstream page URL the links came from
    Column("links", Text, nullable=False),  # JSON list of link dicts (see mirror/page.py)
    Column("etag", String(400)),
    Column("last_modified", String(100)),
    Column("serial", BigInteger),  # upstream's X-PyPI-Last-Serial
    Column("fetched", Float, nullable=False),  # unix time of the last successful (re)validation
)

# One row per mirrored file kept in the blob store (verified against the upstream page's hash).
mirror_files = Table(
    "mirror_files", metadata,
    Column("index_id", Integer, ForeignKey("indexes.id", ondelete="CASCADE"), primary_key=True),
    Column("relpath", String(600), primary_key=True),  # "+f/abc/def.../name" or "+e/.../name"
    Column("project", String(200), nullable=False),
    Column("filename", String(300), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", Float, nullable=False),
    Column("url", Text, nullable=False),
    # when a download last asked for it (migration 0008), written coarsely in batches
    # (mirror/cache_budget.py): the order in which --mirror-cache-size evicts; NULL: never recorded
    Column("last_access", Float),
)
Index("ix_mirror_files_project", mirror_files.c.index_id, mirror_files.c.project)
# the order in which replicas read the cache (migration 0010, replication/mirror_feed.py)
Index("ix_mirror_pages_fetched", mirror_pages.c.fetched)
Index("ix_mirror_files_created", mirror_files.c.created)

# Upstream's project list, one row per mirror index.
mirror_lists = Table(
    "mirror_lists", metadata,
    Column("index_id", Integer, ForeignKey("indexes.id", ondelete="CASCADE"), primary_key=True),
    Column("names", Text, nullable=False),  # JSON list of names
    Column("etag", String(400)),
    Column("serial", BigInteger),
    Column("fetched", Float, nullable=False),
)
__all__ += ["mirror_pages", "mirror_files", "mirror_lists"]

# ---------------------------------------------------------------------------------------------
# Test runs (migration 0003, owned by testruns/api.py): live `devpi test` runs attached to release
# files, and the per-test events they stream. The finished tox report is also stored as a
# classic devpi "toxresult" file row (toxresult_file_id).

testruns = Table(
    "testruns", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("file_id", Integer, ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(20), nullable=False),  # running | passed | failed | interrupted | error
    Column("key", String(64), nullable=False),  # secret the uploading client proves itself with
    Column("who", String(100)),
    Column("host", String(300), nullable=False),
    Column("platform", String(50), nullable=False),
    Column("python", String(300), nullable=False),  # the runner's sys.version
    Column("label", String(300), nullable=False),  # e.g. the execnet spec
    Column("started", Float, nullable=False),
    Column("last_seen", Float, nullable=False),  # last sign of life (event or heartbeat)
    Column("timeout", Float, nullable=False),  # seconds of silence after which it is interrupted
    Column("finished", Float),
    Column("exitcode", Integer),
    Column("toxresult_file_id", Integer, ForeignKey("files.id", ondelete="SET NULL")),
    Column("envs", Text, nullable=False),  # JSON {env: {"python": "3.12.1", "status": ...}}
    Column("info", Text, nullable=False),  # JSON: anything else the client said (error text ...)
)
Index("ix_testruns_file", testruns.c.file_id)

testrun_events = Table(
    "testrun_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("testruns.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),  # order of arrival within the run
    Column("received", Float, nullable=False),  # server time the event arrived
    Column("env", String(200), nullable=False),
    Column("nodeid", Text, nullable=False),
    Column("outcome", String(20), nullable=False),  # passed | failed | skipped | error | ...
    Column("duration", Float),
    Column("longrepr", Text),
    Column("data", Text, nullable=False),  # JSON: the rest of the event as sent
)
Index("ix_testrun_events_run", testrun_events.c.run_id, testrun_events.c.seq)
__all__ += ["testruns", "testrun_events"]

# ---------------------------------------------------------------------------------------------
# Scoped API tokens (migration 0006, owned by store/tokens.py). A token string names its row
# ("devpi_<id>_<secret>", see accounts/api_tokens.py), so checking one is a primary-key look-up;
# only the SHA-256 of its random secret is stored. Created and revoked through write
# transactions (changelog kind "token"); ``last_used`` is written without a serial.
tokens = Table(
    "tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(100), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(64), nullable=False),  # hex SHA-256 of the secret part
    Column("actions", Text, nullable=False),  # JSON list of accounts/scope.py actions
    Column("indexes", Text),  # JSON list of "user/index"; NULL: any index
    Column("expires", Float, nullable=False),  # unix time
    Column("description", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("last_used", Float),  # unix time, written at most once a minute per token and process
)
Index("ix_tokens_owner", tokens.c.owner)
__all__ += ["tokens"]

# The audit log (store/audit_log.py): writes and failed logins, who/what/where/when. Bounded by
# count (--audit-keep): the oldest rows go first. Not part of the changelog (replicas and
# plugins never see it) and readable by root only (GET /+audit).
audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),  # server time, seconds since the epoch
    Column("event", String(20), nullable=False),  # write | auth-failure
    Column("user", String(100)),  # the authenticated user; for a failed login the name tried
    Column("client", String(100), nullable=False),  # the address (trusted proxies resolved)
    Column("method", String(10), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("status", Integer, nullable=False),
)
__all__ += ["audit"]

# ---------------------------------------------------------------------------------------------
# Blobs the garbage collector found unreferenced, and since when (migration 0008, owned by
# store/reachability.py). A blob is deleted once it has stayed unreferenced for the grace
# period: exports and in-flight transactions rely on that (doc/operations.md, "Disk budget").
blob_gc_candidates = Table(
    "blob_gc_candidates", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("since", Float, nullable=False),
)
__all__ += ["blob_gc_candidates"]

# ---------------------------------------------------------------------------------------------
# The rows each serial wrote, as a replica applies them (migration 0009, owned by
# store/row_journal.py): one JSON list of row images per serial, written in the same
# transaction as the changelog row.
replication_rows = Table(
    "replication_rows", metadata,
    Column("serial", BigInteger, primary_key=True, autoincrement=False),
    Column("rows", Text, nullable=False),
)
__all__ += ["replication_rows"]
