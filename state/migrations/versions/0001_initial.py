"""Initial schema: zones, providers, observations, processes, history, leases.

Written by hand with explicit types so that this revision keeps creating the same schema
whatever later happens to ``state/models.py``.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "zone",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("model", sa.Integer(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "provider",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "observed_rrset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("server", sa.String(), nullable=False),
        sa.Column("rrtype", sa.String(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        _ts("cached_until"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "zone", "source", "server", "rrtype", "digest", name="uq_observed_rrset"
        ),
    )
    op.create_index(
        "ix_observed_rrset_window", "observed_rrset", ["zone", "rrtype", "cached_until"]
    )
    op.create_table(
        "observed_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("server", sa.String(), nullable=False),
        sa.Column("key_tag", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("dnskey", sa.Text(), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        _ts("cached_until"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "zone",
            "source",
            "server",
            "key_tag",
            "algorithm",
            "flags",
            "role",
            "origin",
            name="uq_observed_key",
        ),
    )
    op.create_index("ix_observed_key_zone", "observed_key", ["zone"])
    op.create_table(
        "process",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("signer", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _ts("started_at"),
        _ts("updated_at"),
        _ts("finished_at", nullable=True),
        _ts("next_check_at", nullable=True),
        sa.Column("waiting_for", sa.String(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_process_zone_status", "process", ["zone", "status"])
    op.create_index("ix_process_status_next_check", "process", ["status", "next_check_at"])
    op.create_index(
        "uq_process_running_zone",
        "process",
        ["zone"],
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "history",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("process_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("from_state", sa.String(), nullable=True),
        sa.Column("to_state", sa.String(), nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_history_zone", "history", ["zone", "seq"])
    op.create_table(
        "lease",
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        _ts("acquired_at"),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("zone"),
    )


def downgrade() -> None:
    for table in ("lease", "history", "process", "observed_key", "observed_rrset"):
        op.drop_table(table)
    op.drop_table("provider")
    op.drop_table("zone")
