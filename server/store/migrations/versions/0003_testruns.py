"""Test runs of `devpi test` and their streamed per-test events.

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("testruns",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("file_id", sa.Integer, sa.ForeignKey("files.id", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("status", sa.String(20), nullable=False),
                    sa.Column("key", sa.String(64), nullable=False),
                    sa.Column("who", sa.String(100)),
                    sa.Column("host", sa.String(300), nullable=False),
                    sa.Column("platform", sa.String(50), nullable=False),
                    sa.Column("python", sa.String(300), nullable=False),
                    sa.Column("label", sa.String(300), nullable=False),
                    sa.Column("started", sa.Float, nullable=False),
                    sa.Column("last_seen", sa.Float, nullable=False),
                    sa.Column("timeout", sa.Float, nullable=False),
                    sa.Column("finished", sa.Float),
                    sa.Column("exitcode", sa.Integer),
                    sa.Column("toxresult_file_id", sa.Integer,
                              sa.ForeignKey("files.id", ondelete="SET NULL")),
                    sa.Column("envs", sa.Text, nullable=False),
                    sa.Column("info", sa.Text, nullable=False))
    op.create_index("ix_testruns_file", "testruns", ["file_id"])
    op.create_table("testrun_events",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("run_id", sa.Integer, sa.ForeignKey("testruns.id", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("seq", sa.Integer, nullable=False),
                    sa.Column("received", sa.Float, nullable=False),
                    sa.Column("env", sa.String(200), nullable=False),
                    sa.Column("nodeid", sa.Text, nullable=False),
                    sa.Column("outcome", sa.String(20), nullable=False),
                    sa.Column("duration", sa.Float),
                    sa.Column("longrepr", sa.Text),
                    sa.Column("data", sa.Text, nullable=False))
    op.create_index("ix_testrun_events_run", "testrun_events", ["run_id", "seq"])


def downgrade() -> None:
    op.drop_table("testrun_events")
    op.drop_table("testruns")
