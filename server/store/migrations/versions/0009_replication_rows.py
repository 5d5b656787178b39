"""Replication: the rows each serial wrote (store/row_journal.py), for replicas to apply.

Serials committed before this migration have no rows here: a replica starts from a
snapshot (``devpi export``'s tables) at or after the first serial that has them.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("replication_rows",
                    sa.Column("serial", sa.BigInteger, primary_key=True, autoincrement=False),
                    sa.Column("rows", sa.Text, nullable=False))


def downgrade() -> None:
    op.drop_table("replication_rows")
