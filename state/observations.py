"""Recording what the nameservers served, and what a resolver may still have cached.

Each distinct RRset content (by digest of its canonical text) or key (by digest of its
canonical DNSKEY text, never by key tag: two keys may share a tag) gets one row per
(source, server); seeing it again only moves ``last_seen`` forward and extends
``cached_until`` = the latest (seen + TTL). The invariant check (docs/design-notes.md,
"The invariant") needs
every content that any resolver may still hold, so ``cached_until`` never moves backwards
even when a later sighting has a shorter TTL.

Upserts are single ``INSERT ... ON CONFLICT DO UPDATE`` statements executed as one
executemany, so a poll of ~600 servers costs one round of statements in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dns.exception import DNSException
from sqlalchemy import Table, case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from core.errors import StateError
from core.keys import Key
from state.canonical import sha256_hex, utc
from state.models import KEY_ROLES, ObservedKey, ObservedRRset

_RRSET_KEY = ("zone", "source", "server", "rrtype", "digest")
_KEY_KEY = ("zone", "source", "server", "key_digest", "role", "origin")


@dataclass(frozen=True)
class RRsetRecord:
    """One RRset as served by one server. ``text``: zone-file lines, canonical form."""

    zone: str
    source: str  # provider name, or "parent"
    server: str  # "host:port"
    rrtype: str
    text: str
    ttl: int


@dataclass(frozen=True)
class KeyRecord:
    """One DNSKEY as served by one server. ``origin``: owning provider, "" if unknown.
    ``dnskey`` (rdata text, any presentation form) identifies the key; ``key_tag``,
    ``algorithm`` and ``flags`` are stored alongside for display only."""

    zone: str
    source: str
    server: str
    key_tag: int
    algorithm: int
    flags: int
    role: str
    origin: str
    dnskey: str
    ttl: int


def _check_ttl(ttl: int, what: str) -> None:
    if ttl < 0:
        raise StateError(f"{what}: TTL {ttl} is negative; pass the TTL the server returned")


def _rrset_row(record: RRsetRecord, now: datetime) -> dict[str, Any]:
    _check_ttl(record.ttl, f"{record.rrtype} RRset of {record.zone} from {record.server}")
    return {
        "zone": record.zone,
        "source": record.source,
        "server": record.server,
        "rrtype": record.rrtype.upper(),
        "digest": sha256_hex(record.text),
        "text": record.text,
        "ttl": record.ttl,
        "first_seen": now,
        "last_seen": now,
        "cached_until": now + timedelta(seconds=record.ttl),
    }


def _canonical_key(text: str, where: str) -> Key:
    # One key in two presentation forms (spaced base64, mnemonic algorithm) must land on
    # one row, so the digest is taken over the canonical text.
    try:
        return Key.parse(text)
    except (DNSException, ValueError) as exc:
        raise StateError(f"{where}: {text!r} is not DNSKEY rdata text ({exc}); pass the "
                         "record's rdata, e.g. '257 3 13 <base64 public key>'") from exc


def _key_row(record: KeyRecord, now: datetime) -> dict[str, Any]:
    where = f"key {record.key_tag} of {record.zone} from {record.server}"
    _check_ttl(record.ttl, where)
    if record.role not in KEY_ROLES:
        raise StateError(f"{where}: role {record.role!r} is not one of ksk, zsk, csk")
    key = _canonical_key(record.dnskey, where)
    return {
        "zone": record.zone,
        "source": record.source,
        "server": record.server,
        "key_tag": record.key_tag,
        "algorithm": record.algorithm,
        "flags": record.flags,
        "role": record.role,
        "origin": record.origin,
        "dnskey": key.text,
        "key_digest": key.digest,
        "ttl": record.ttl,
        "first_seen": now,
        "last_seen": now,
        "cached_until": now + timedelta(seconds=record.ttl),
    }


def _dedupe(rows: Iterable[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    # PostgreSQL refuses an upsert that touches the same row twice in one statement.
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        ident = tuple(row[name] for name in key)
        previous = unique.get(ident)
        if previous is not None and previous["cached_until"] > row["cached_until"]:
            unique[ident] = {**row, "cached_until": previous["cached_until"]}
        else:
            unique[ident] = row
    return list(unique.values())


def _upsert(
    session: Session,
    table: Table,
    key: tuple[str, ...],
    rows: list[dict[str, Any]],
    refresh: tuple[str, ...],
) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = sqlite_insert(table) if dialect == "sqlite" else pg_insert(table)
    new = insert.excluded
    sets: dict[str, Any] = {name: new[name] for name in refresh}
    sets["last_seen"] = case(
        (new.last_seen > table.c.last_seen, new.last_seen), else_=table.c.last_seen
    )
    sets["cached_until"] = case(
        (new.cached_until > table.c.cached_until, new.cached_until),
        else_=table.c.cached_until,
    )
    statement = insert.on_conflict_do_update(index_elements=list(key), set_=sets)
    session.connection().execute(statement, rows)


def upsert_observations(
    session: Session,
    rrsets: Iterable[RRsetRecord],
    keys: Iterable[KeyRecord],
    now: datetime,
) -> None:
    """Record sightings at *now*. Call inside ``Database.write()``."""
    now = utc(now, "observation time")
    tables = ObservedRRset.metadata.tables
    rrset_rows = _dedupe((_rrset_row(r, now) for r in rrsets), _RRSET_KEY)
    key_rows = _dedupe((_key_row(k, now) for k in keys), _KEY_KEY)
    _upsert(session, tables[ObservedRRset.__tablename__], _RRSET_KEY, rrset_rows, ("ttl",))
    _upsert(session, tables[ObservedKey.__tablename__], _KEY_KEY, key_rows, ("ttl", "dnskey"))
