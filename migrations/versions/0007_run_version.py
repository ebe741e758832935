"""run version: a number the database bumps on every update of a run's row, by which the polled page of runs
keeps each run's encoded answer

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 15:20:00.000000

The triggers are this migration's own SQL (store/models.py: RUN_VERSION_TRIGGERS creates the same for
`create_all`). A later migration that rebuilds the runs table on SQLite (batch mode's copy of a table) drops its
triggers and must create them again: tests/test_migrations.py checks that an update bumps the version at head.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SQLITE = (
    "CREATE TRIGGER runs_version AFTER UPDATE ON runs FOR EACH ROW WHEN NEW.version = OLD.version "
    "BEGIN UPDATE runs SET version = OLD.version + 1 WHERE id = NEW.id; END"
)
POSTGRESQL = (
    "CREATE FUNCTION runs_version() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$",
    "CREATE TRIGGER runs_version BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION runs_version()",
)


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL:
            op.execute(statement)
    else:
        op.execute(SQLITE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS runs_version ON runs")
        op.execute("DROP FUNCTION IF EXISTS runs_version()")
    else:
        op.execute("DROP TRIGGER IF EXISTS runs_version")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("version")
