"""Authenticated history: a per-entry MAC (HMAC-SHA256 of the entry hash under the
``[history]`` key). Existing entries keep NULL until ``multisigner audit seal``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER most things in place; alembic copies the table there
    # and issues a plain ALTER TABLE ... ADD COLUMN on PostgreSQL.
    with op.batch_alter_table("history") as batch:
        batch.add_column(sa.Column("mac", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("history") as batch:
        batch.drop_column("mac")
