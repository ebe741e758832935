"""token lifecycle: expiry, revocation, last use, and the bootstrap admin's mark

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("bootstrap", sa.Boolean(), nullable=True))
        batch_op.create_unique_constraint("uq_users_bootstrap", ["bootstrap"])
    # The bootstrap admin of a database made before this revision: ensure_admin ran before any request could
    # create a token, so it is the first admin.
    users = sa.table(
        "users",
        sa.column("id", sa.Integer()),
        sa.column("is_admin", sa.Boolean()),
        sa.column("bootstrap", sa.Boolean()),
    )
    first_admin = sa.select(sa.func.min(users.c.id)).where(users.c.is_admin.is_(True)).scalar_subquery()
    op.execute(users.update().where(users.c.id == first_admin).values(bootstrap=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_bootstrap", type_="unique")
        batch_op.drop_column("bootstrap")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("expires_at")
