"""The audit log: writes and authentication failures (store/audit_log.py).

Revision ID: 0007
Revises: 0006 (developed on 0005: re-chained onto the tokens migration at merge)
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("audit",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("at", sa.Float, nullable=False),
                    sa.Column("event", sa.String(20), nullable=False),
                    sa.Column("user", sa.String(100)),
                    sa.Column("client", sa.String(100), nullable=False),
                    sa.Column("method", sa.String(10), nullable=False),
                    sa.Column("path", sa.String(1000), nullable=False),
                    sa.Column("status", sa.Integer, nullable=False))


def downgrade() -> None:
    op.drop_table("audit")
