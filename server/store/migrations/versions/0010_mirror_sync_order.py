"""The order in which replicas read a primary's mirror cache (replication/mirror_feed.py): by
``mirror_pages.fetched`` and ``mirror_files.created``. Without these indexes every poll of
every replica would scan and sort the whole cache.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_mirror_pages_fetched", "mirror_pages", ["fetched"])
    op.create_index("ix_mirror_files_created", "mirror_files", ["created"])


def downgrade() -> None:
    op.drop_index("ix_mirror_files_created", table_name="mirror_files")
    op.drop_index("ix_mirror_pages_fetched", table_name="mirror_pages")
