"""Fencing tokens: a per-zone counter bumped at every lease grant (table ``lease_grant``);
the history records the token each fenced write was made under.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "lease_grant",
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("zone"),
    )


def downgrade() -> None:
    op.drop_table("lease_grant")
