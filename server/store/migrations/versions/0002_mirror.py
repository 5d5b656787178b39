"""Mirror cache: upstream project pages, cached files and the upstream project list.

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _index_fk():
    return sa.Column("index_id", sa.Integer, sa.ForeignKey("indexes.id", ondelete="CASCADE"),
                     primary_key=True)


def upgrade() -> None:
    op.create_table("mirror_pages", _index_fk(),
                    sa.Column("project", sa.String(200), primary_key=True),
                    sa.Column("url", sa.Text, nullable=False),
                    sa.Column("links", sa.Text, nullable=False),
                    sa.Column("etag", sa.String(400)),
                    sa.Column("last_modified", sa.String(100)),
                    sa.Column("serial", sa.BigInteger),
                    sa.Column("fetched", sa.Float, nullable=False))
    op.create_table("mirror_files", _index_fk(),
                    sa.Column("relpath", sa.String(600), primary_key=True),
                    sa.Column("project", sa.String(200), nullable=False),
                    sa.Column("filename", sa.String(300), nullable=False),
                    sa.Column("sha256", sa.String(64), nullable=False),
                    sa.Column("size", sa.BigInteger, nullable=False),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.Column("url", sa.Text, nullable=False))
    op.create_index("ix_mirror_files_project", "mirror_files", ["index_id", "project"])
    op.create_table("mirror_lists", _index_fk(),
                    sa.Column("names", sa.Text, nullable=False),
                    sa.Column("etag", sa.String(400)),
                    sa.Column("serial", sa.BigInteger),
                    sa.Column("fetched", sa.Float, nullable=False))


def downgrade() -> None:
    op.drop_table("mirror_lists")
    op.drop_index("ix_mirror_files_project", "mirror_files")
    op.drop_table("mirror_files")
    op.drop_table("mirror_pages")
