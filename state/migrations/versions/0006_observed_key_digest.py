"""Observed keys identified by the key itself: ``observed_key.key_digest`` (SHA-256 hex of
the canonical DNSKEY text) replaces ``key_tag``, ``algorithm`` and ``flags`` in the unique
constraint ``uq_observed_key``. Under the old constraint two different keys sharing a key
tag (a collision between providers' keys) seen at one server overwrote each other's row.

Existing rows get their digest (and their ``dnskey`` text in canonical form) computed
here. Rows the old constraint kept apart only by inconsistent tag/algorithm/flags columns
for one key (no writer produced such rows, but a migration must not fail on them) are
merged: earliest ``first_seen``, latest ``last_seen`` and ``cached_until``, the newest
sighting's other columns.

The downgrade restores the old constraint; of keys that then collide (same tag,
algorithm, flags, role, origin at one server) it keeps the most recently seen row only,
as the old schema could.

As an offline script (``alembic upgrade --sql``, for a DBA) it is written for PostgreSQL
only, which computes the digests itself over the stored text (always canonical as the
controller wrote it).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_NEW_UNIQUE = ["zone", "source", "server", "key_digest", "role", "origin"]
_OLD_UNIQUE = ["zone", "source", "server", "key_tag", "algorithm", "flags", "role", "origin"]

# A lightweight table description frozen at this revision (not state/models.py, which
# moves on): only the columns this migration reads or writes.
_ts = sa.DateTime(timezone=True)
_keys = sa.table(
    "observed_key",
    sa.column("id", sa.Integer()),
    sa.column("zone", sa.String()),
    sa.column("source", sa.String()),
    sa.column("server", sa.String()),
    sa.column("key_tag", sa.Integer()),
    sa.column("algorithm", sa.Integer()),
    sa.column("flags", sa.Integer()),
    sa.column("role", sa.String()),
    sa.column("origin", sa.String()),
    sa.column("dnskey", sa.Text()),
    sa.column("key_digest", sa.String()),
    sa.column("first_seen", _ts),
    sa.column("last_seen", _ts),
    sa.column("cached_until", _ts),
)


def canonical_dnskey(text: str) -> str:
    """``"<flags> <protocol> <algorithm number> <base64 without spaces>"``, the form
    ``core.keys.Key`` keeps (repeated here so that this revision never changes); text that
    is not DNSKEY rdata is kept as it is (stripped)."""
    try:
        rdata: Any = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, text)
    except (dns.exception.DNSException, ValueError):
        return text.strip()
    key = base64.b64encode(rdata.key).decode()
    return f"{rdata.flags} {rdata.protocol} {int(rdata.algorithm)} {key}"


def _merge(rows: Sequence[sa.Row[Any]], key: Iterable[str]) -> None:
    """Leave one row per value of the columns ``key``: the most recently seen one, with the
    earliest first sighting and the latest cache horizon of the group."""
    groups: dict[tuple[Any, ...], list[sa.Row[Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(getattr(row, name) for name in key), []).append(row)
    bind = op.get_bind()
    for group in groups.values():
        if len(group) < 2:
            continue
        keep = max(group, key=lambda r: (r.last_seen, r.id))
        bind.execute(
            _keys.update()
            .where(_keys.c.id == keep.id)
            .values(first_seen=min(r.first_seen for r in group),
                    cached_until=max(r.cached_until for r in group))
        )
        bind.execute(_keys.delete().where(_keys.c.id.in_([r.id for r in group if r is not keep])))


def _all_rows() -> Sequence[sa.Row[Any]]:
    return op.get_bind().execute(sa.select(_keys)).all()


def _fill() -> None:
    bind = op.get_bind()
    filled = []
    for row in bind.execute(sa.select(_keys.c.id, _keys.c.dnskey)).all():
        text = canonical_dnskey(row.dnskey)
        filled.append({"row_id": row.id, "text": text,
                       "digest": hashlib.sha256(text.encode()).hexdigest()})
    if filled:  # one executemany, not a round trip per row
        bind.execute(_keys.update().where(_keys.c.id == sa.bindparam("row_id"))
                     .values(dnskey=sa.bindparam("text"), key_digest=sa.bindparam("digest")),
                     filled)
    _merge(_all_rows(), _NEW_UNIQUE)


def _fill_offline() -> None:
    """``alembic upgrade --sql`` (a script for a DBA, no rows to read): PostgreSQL computes
    the digests itself. The controller always stored canonical text, so hashing the text
    as stored gives the same digest as ``canonical_dnskey``; nothing to merge either."""
    if op.get_context().dialect.name != "postgresql":
        raise NotImplementedError("migration 0006 as an offline SQL script is only written "
                                  "for PostgreSQL; run it online (multisigner migrates "
                                  "the database when it opens it)")
    op.execute("UPDATE observed_key SET key_digest = "
               "encode(sha256(convert_to(dnskey, 'UTF8')), 'hex')")


def upgrade() -> None:
    # batch mode: SQLite cannot change constraints in place (alembic copies the table);
    # PostgreSQL gets plain ALTER TABLE statements.
    with op.batch_alter_table("observed_key") as batch:
        batch.add_column(sa.Column("key_digest", sa.String(), nullable=True))
    if context.is_offline_mode():
        _fill_offline()
    else:
        _fill()
    with op.batch_alter_table("observed_key") as batch:
        batch.alter_column("key_digest", existing_type=sa.String(), nullable=False)
        batch.drop_constraint("uq_observed_key", type_="unique")
        batch.create_unique_constraint("uq_observed_key", _NEW_UNIQUE)


def _merge_offline_for_downgrade() -> None:
    # The old identity's duplicates (keys sharing a tag), in SQL: keep the last seen row.
    same = " AND ".join(f"a.{name} = b.{name}" for name in _OLD_UNIQUE)
    op.execute(f"DELETE FROM observed_key a USING observed_key b WHERE {same} "
               "AND (a.last_seen, a.id) < (b.last_seen, b.id)")


def downgrade() -> None:
    if context.is_offline_mode():
        _merge_offline_for_downgrade()
    else:
        _merge(_all_rows(), _OLD_UNIQUE)
    with op.batch_alter_table("observed_key") as batch:
        batch.drop_constraint("uq_observed_key", type_="unique")
        batch.create_unique_constraint("uq_observed_key", _OLD_UNIQUE)
        batch.drop_column("key_digest")
