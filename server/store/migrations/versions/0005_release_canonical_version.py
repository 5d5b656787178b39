"""Store each release's PEP 440 canonical version in an indexed column.

Finding "4.0.0" as a stored "4.0" used to parse every version of the project,
several times per upload: the 10,000th upload of a project cost far more than
the first. With the column the look-up is one query on an index of
(project_id, canonical_version). Not unique: a server dir may already hold two
spellings of one version, and the look-up takes the oldest, as it did before.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op
from packaging.utils import canonicalize_version

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 5000  # rows per executemany: bounded memory on a server dir of any size


def upgrade() -> None:
    op.add_column("releases", sa.Column("canonical_version", sa.String(300)))
    releases = sa.table("releases", sa.column("id", sa.Integer), sa.column("version", sa.String),
                        sa.column("canonical_version", sa.String))
    conn = op.get_bind()
    update = (releases.update().where(releases.c.id == sa.bindparam("rid"))
              .values(canonical_version=sa.bindparam("canonical")))
    last = 0
    while True:
        rows = conn.execute(sa.select(releases.c.id, releases.c.version).where(releases.c.id > last)
                            .order_by(releases.c.id).limit(BATCH)).all()
        if not rows:
            break
        conn.execute(update, [{"rid": r.id, "canonical": canonicalize_version(r.version)} for r in rows])
        last = rows[-1].id
    op.create_index("ix_releases_canonical", "releases", ["project_id", "canonical_version"])


def downgrade() -> None:
    op.drop_index("ix_releases_canonical", table_name="releases")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("canonical_version")
