"""Copy Requires-Python out of the release metadata into a column; join the branches.

Simple pages list requires-python for every file; reading it from the JSON
metadata meant parsing every release's description on each page render.

Revision ID: 0004
Revises: 0002, 0003
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = ("0002", "0003")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("releases", sa.Column("requires_python", sa.String(200)))
    releases = sa.table("releases", sa.column("id", sa.Integer), sa.column("metadata", sa.Text),
                        sa.column("requires_python", sa.String))
    conn = op.get_bind()
    for row in conn.execute(sa.select(releases.c.id, releases.c.metadata)).all():
        value = (json.loads(row.metadata or "{}") or {}).get("requires_python") or None
        if value:
            conn.execute(releases.update().where(releases.c.id == row.id).values(requires_python=value))


def downgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("requires_python")
