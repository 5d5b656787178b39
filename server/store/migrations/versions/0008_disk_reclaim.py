"""Disk reclaiming: when each cached mirror file was last asked for, and the blobs the
garbage collector found unreferenced (store/reachability.py, mirror/cache_budget.py).

``mirror_files.last_access`` is NULL until a download is recorded (eviction then goes by
``created``); it is written coarsely, in batches (see mirror/cache_budget.AccessLog).
``blob_gc_candidates`` remembers since when a blob has been seen unreferenced: a blob is
deleted only once it has stayed unreferenced for the grace period, however old its file.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mirror_files", sa.Column("last_access", sa.Float))
    op.create_table("blob_gc_candidates",
                    sa.Column("sha256", sa.String(64), primary_key=True),
                    sa.Column("since", sa.Float, nullable=False))


def downgrade() -> None:
    op.drop_table("blob_gc_candidates")
    with op.batch_alter_table("mirror_files") as batch:
        batch.drop_column("last_access")
