"""events by kind and run: the checkpoint events a user's stored bytes are summed from

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 20:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_kind_run_id", "events", ["kind", "run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_kind_run_id", table_name="events")
