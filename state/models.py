"""Tables of the state database (SQLModel).

What the controller remembers between runs: the zones and providers it manages, every
distinct RRset and key it has observed (with first/last seen and TTL, so it can tell what a
resolver may still have cached), the processes it runs (rollovers, syncs) with their
deadlines, the append-only hash-chained history, and per-zone leases.

Schema changes go through a new alembic revision in ``state/migrations/versions``; these
classes and the migrations must stay in step (a unit test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Index, Text, UniqueConstraint, text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from state.canonical import utc

ZERO_HASH = "0" * 64

PROCESS_STATUSES = ("running", "done", "failed", "aborted")
FINISHED_STATUSES = frozenset({"done", "failed", "aborted"})
KEY_ROLES = frozenset({"ksk", "zsk", "csk"})


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no timezone type: values are stored as naive UTC text, whose fixed format
    makes SQL comparisons (``cached_until >= now``) correct. PostgreSQL keeps
    ``timestamptz``. Either way Python code only ever sees aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Zone(SQLModel, table=True):
    __tablename__ = "zone"

    name: str = Field(primary_key=True)
    model: int
    created_at: datetime = Field(sa_type=UTCDateTime)


class Provider(SQLModel, table=True):
    __tablename__ = "provider"

    name: str = Field(primary_key=True)
    type: str


class ObservedRRset(SQLModel, table=True):
    """One row per distinct RRset content seen from one server of one source."""

    __tablename__ = "observed_rrset"
    __table_args__ = (
        UniqueConstraint("zone", "source", "server", "rrtype", "digest", name="uq_observed_rrset"),
        Index("ix_observed_rrset_window", "zone", "rrtype", "cached_until"),
    )

    id: int | None = Field(default=None, primary_key=True)
    zone: str
    source: str  # provider name, or "parent"
    server: str  # "host:port"
    rrtype: str
    digest: str  # sha256 hex of `text`
    text: str = Field(sa_type=Text)
    ttl: int
    first_seen: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime)
    # Latest instant a resolver may still hold this content: max over sightings of
    # (seen + ttl). Stored rather than computed so the window query is one indexed
    # comparison on every backend (no dialect-specific interval arithmetic).
    cached_until: datetime = Field(sa_type=UTCDateTime)


class ObservedKey(SQLModel, table=True):
    """One row per DNSKEY seen at one server, with the provider believed to own it.

    A row is identified by the key itself (``key_digest``), never by its key tag: two
    different keys can share a tag (16 bits; two providers' keys collide easily), and
    one would otherwise overwrite the other's sighting. ``key_tag``, ``algorithm`` and
    ``flags`` are kept only to be shown and filtered on."""

    __tablename__ = "observed_key"
    __table_args__ = (
        UniqueConstraint(
            "zone",
            "source",
            "server",
            "key_digest",
            "role",
            "origin",
            name="uq_observed_key",
        ),
        Index("ix_observed_key_zone", "zone"),
    )

    id: int | None = Field(default=None, primary_key=True)
    zone: str
    source: str
    server: str
    key_tag: int
    algorithm: int
    flags: int
    role: str  # "ksk" | "zsk" | "csk"
    origin: str  # provider owning the key, "" if unknown
    dnskey: str = Field(sa_type=Text)  # canonical rdata text (public key material only)
    key_digest: str  # SHA-256 hex of ``dnskey`` (core.keys.Key.digest)
    ttl: int
    first_seen: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime)
    cached_until: datetime = Field(sa_type=UTCDateTime)


class Process(SQLModel, table=True):
    """A multi-step procedure on one zone (sync, rollover, signer add/remove)."""

    __tablename__ = "process"
    __table_args__ = (
        Index("ix_process_zone_status", "zone", "status"),
        Index("ix_process_status_next_check", "status", "next_check_at"),
        # At most one running process per zone, enforced by the database as well as by
        # start_process(), so even a buggy or foreign writer cannot run two at once.
        Index(
            "uq_process_running_zone",
            "zone",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: str = Field(primary_key=True)  # uuid4 hex
    zone: str
    kind: str
    signer: str | None = None
    state: str
    status: str  # one of PROCESS_STATUSES
    started_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_check_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    waiting_for: str | None = None
    data: str = Field(sa_type=Text)  # canonical JSON object
    actor: str


class HistoryEntry(SQLModel, table=True):
    """One link of the global, append-only, hash-chained history.

    ``seq`` is assigned by the writer (last seq + 1 under the write lock), not by a
    database sequence: it is part of the hashed content, so it must be known before the
    insert, and sequences may skip numbers on rollback, which would look like a deleted
    entry to the verifier.
    """

    __tablename__ = "history"
    __table_args__ = (Index("ix_history_zone", "zone", "seq"),)

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    zone: str
    process_id: str | None = None
    kind: str
    from_state: str | None = None
    to_state: str
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str
    reason: str = Field(sa_type=Text)
    evidence: str = Field(sa_type=Text)  # canonical JSON object
    prev_hash: str
    hash: str
    # HMAC-SHA256 of ``hash`` under the ``[history]`` key (state/history_key.py); NULL for
    # entries written without a key. The key itself is never stored.
    mac: str | None = None


class Lease(SQLModel, table=True):
    """Which controller may act on a zone, until when."""

    __tablename__ = "lease"

    zone: str = Field(primary_key=True)
    holder: str
    acquired_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class LeaseGrant(SQLModel, table=True):
    """A zone's fencing token: a counter that only grows, bumped each time the zone's lease
    is granted to a holder (taken while free or expired, or from a dead holder; not when
    its holder renews it). The history records the token of the lease each fenced write
    was made under, so the order of holders can be read from it and checked: tokens never
    go down along a zone's history, and a holder that lost the zone cannot write with its
    old token (state/leases.py). Never deleted (a released lease's row is)."""

    __tablename__ = "lease_grant"

    zone: str = Field(primary_key=True)
    token: int


MEMBER_STATES = ("active", "joining", "leaving")


class ZoneSigner(SQLModel, table=True):
    """Which providers sign a zone now. Seeded from the config's ``signers`` the first time
    the zone is seen; from then on changed only by the signer add/remove processes, so a
    half-finished join or leave is never undone by an edit of the config file."""

    __tablename__ = "zone_signer"

    zone: str = Field(primary_key=True)
    provider: str = Field(primary_key=True)
    state: str
    position: int
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ManagedRecord(SQLModel, table=True):
    """A record the controller put at some name of a zone and keeps an eye on (today:
    dns-persist-01 ``_validation-persist`` TXT records): ``verify`` reports a signer that
    no longer serves it. ``key`` tells records of one RRset apart (issuer + account)."""

    __tablename__ = "managed_record"

    zone: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    rrtype: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    value: str = Field(sa_type=Text)  # the record's value (TXT: its strings joined)
    purpose: str
    actor: str
    updated_at: datetime = Field(sa_type=UTCDateTime)


TABLES = (Zone, Provider, ObservedRRset, ObservedKey, Process, HistoryEntry, Lease, LeaseGrant,
          ZoneSigner, ManagedRecord)
TABLE_NAMES = frozenset(str(model.__tablename__) for model in TABLES)
