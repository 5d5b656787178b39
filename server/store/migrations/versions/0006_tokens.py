"""Scoped API tokens (``devpi token create``): one row per token, the secret only hashed.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("tokens",
                    sa.Column("id", sa.String(32), primary_key=True),
                    sa.Column("owner", sa.String(100), sa.ForeignKey("users.name", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("secret_hash", sa.String(64), nullable=False),
                    sa.Column("actions", sa.Text, nullable=False),
                    sa.Column("indexes", sa.Text),
                    sa.Column("expires", sa.Float, nullable=False),
                    sa.Column("description", sa.Text, nullable=False),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.Column("last_used", sa.Float))
    op.create_index("ix_tokens_owner", "tokens", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_tokens_owner", table_name="tokens")
    op.drop_table("tokens")
