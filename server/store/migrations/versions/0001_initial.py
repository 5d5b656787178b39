"""Initial schema: users, indexes, projects, releases, files, serial and changelog.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    kv = op.create_table("kv", sa.Column("key", sa.String(100), primary_key=True),
                         sa.Column("value", sa.Text, nullable=False))
    # The serial row exists from the start, so every writer can lock it (SELECT ... FOR UPDATE).
    op.bulk_insert(kv, [{"key": "serial", "value": "-1"}])
    op.create_table("changelog",
                    sa.Column("serial", sa.BigInteger, primary_key=True, autoincrement=False),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.Column("who", sa.String(100)),
                    sa.Column("changes", sa.Text, nullable=False))
    op.create_table("users",
                    sa.Column("name", sa.String(100), primary_key=True),
                    sa.Column("pwhash", sa.String(400), nullable=False),
                    sa.Column("config", sa.Text, nullable=False),
                    sa.Column("created", sa.String(32), nullable=False),
                    sa.Column("modified", sa.String(32), nullable=False))
    op.create_table("indexes",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("user", sa.String(100), sa.ForeignKey("users.name", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("name", sa.String(100), nullable=False),
                    sa.Column("type", sa.String(20), nullable=False),
                    sa.Column("config", sa.Text, nullable=False),
                    sa.UniqueConstraint("user", "name", name="uq_indexes_user_name"))
    op.create_table("projects",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("index_id", sa.Integer, sa.ForeignKey("indexes.id", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("name", sa.String(200), nullable=False),
                    sa.Column("display_name", sa.String(200), nullable=False),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.UniqueConstraint("index_id", "name", name="uq_projects_index_name"))
    op.create_table("releases",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("version", sa.String(200), nullable=False),
                    sa.Column("metadata", sa.Text, nullable=False),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.UniqueConstraint("project_id", "version", name="uq_releases_project_version"))
    op.create_table("files",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("index_id", sa.Integer, sa.ForeignKey("indexes.id", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("relpath", sa.String(600), nullable=False),
                    sa.Column("filename", sa.String(300), nullable=False),
                    sa.Column("rel", sa.String(20), nullable=False),
                    sa.Column("sha256", sa.String(64), nullable=False),
                    sa.Column("size", sa.BigInteger, nullable=False),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.Column("yanked", sa.Text),
                    sa.Column("core_metadata_sha256", sa.String(64)),
                    sa.Column("for_file_id", sa.Integer, sa.ForeignKey("files.id", ondelete="CASCADE")),
                    sa.Column("log", sa.Text, nullable=False),
                    sa.UniqueConstraint("index_id", "relpath", name="uq_files_index_relpath"))
    op.create_index("ix_files_release", "files", ["release_id"])
    op.create_index("ix_files_for_file", "files", ["for_file_id"])
    op.create_index("ix_releases_project", "releases", ["project_id"])
    op.create_table("deleted_files",
                    sa.Column("index_id", sa.Integer, sa.ForeignKey("indexes.id", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("relpath", sa.String(600), nullable=False),
                    sa.Column("serial", sa.BigInteger, nullable=False),
                    sa.UniqueConstraint("index_id", "relpath", name="uq_deleted_files"))


def downgrade() -> None:
    for table in ("deleted_files", "files", "releases", "projects", "indexes", "users", "changelog", "kv"):
        op.drop_table(table)
