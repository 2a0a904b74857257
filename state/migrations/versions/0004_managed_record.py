"""Managed records: dns-persist-01 TXT records ``acme persist`` wrote, checked by
``verify`` (table ``managed_record``).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "managed_record",
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("rrtype", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone", "name", "rrtype", "key"),
    )


def downgrade() -> None:
    op.drop_table("managed_record")
