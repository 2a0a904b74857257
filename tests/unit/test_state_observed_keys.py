"""Observed keys in state/: a row per key (by its full DNSKEY data, not its key tag) and
server, so two keys whose tags collide never overwrite each other's sighting; and
migration 0006, which moved the table to that identity, over rows an 0005 database holds.

The functions taking a URL are also run against PostgreSQL (tests/pg/test_pg_unit_tests.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.dnssec
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric import ec
from dns.dnssectypes import Algorithm
from sqlalchemy import Integer, String, Text, column, create_engine, insert, table

from core.errors import StateError
from core.keys import Key
from state import KeyRecord, StateStore
from state.database import MIGRATIONS_DIR
from state.info import KeyInfo
from state.models import TABLES, UTCDateTime

T0 = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
ZONE = "example.test."
MAX_KEYS = 20000  # P(no collision among this many 16-bit tags) is astronomically small


def colliding_keys(flags: int) -> tuple[Key, Key]:
    """Two freshly generated ECDSA P-256 DNSKEYs with ``flags`` that share a key tag."""
    seen: dict[int, Key] = {}
    for _ in range(MAX_KEYS):
        public = ec.generate_private_key(ec.SECP256R1()).public_key()
        key = Key.from_rdata(dns.dnssec.make_dnskey(public, Algorithm.ECDSAP256SHA256, flags))
        if key.key_tag in seen:
            return seen[key.key_tag], key
        seen[key.key_tag] = key
    raise AssertionError("no key-tag collision")  # pragma: no cover


@pytest.fixture(scope="module")
def ksks() -> tuple[Key, Key]:
    return colliding_keys(257)


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = "sqlite://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"
    with StateStore.open(url) as opened:
        yield opened


def spaced(key: Key) -> str:
    """The same DNSKEY in another presentation form: mnemonic algorithm, split base64."""
    b64 = key.text.split(" ", 3)[3]
    return f"{key.flags} 3 ECDSAP256SHA256 {b64[:20]} {b64[20:]}"


def sighting(key: Key, server: str, ttl: int, *, origin: str = "", text: str = "") -> KeyRecord:
    return KeyRecord(ZONE, "p0", server, key.key_tag, key.algorithm, key.flags, "ksk", origin,
                     text or key.text, ttl)


def by_key(rows: list[KeyInfo]) -> dict[Key, KeyInfo]:
    out = {Key(row.dnskey): row for row in rows}
    assert len(out) == len(rows), rows
    return out


def test_colliding_keys_at_one_server_keep_their_own_rows(store: StateStore,
                                                          ksks: tuple[Key, Key]) -> None:
    """Two unowned keys with one tag at one server (e.g. a provider's retired KSK and
    another's current one): each keeps its own first sighting and cache horizon."""
    a, b = ksks
    assert a.key_tag == b.key_tag and a != b
    store.record_observations([], [sighting(a, "a:53", 3600)], T0)
    later = T0 + timedelta(minutes=5)
    store.record_observations([], [sighting(b, "a:53", 60)], later)
    rows = by_key(store.keys(ZONE))
    assert set(rows) == {a, b}
    assert (rows[a].first_seen, rows[a].cached_until) == (T0, T0 + timedelta(hours=1))
    assert (rows[b].first_seen, rows[b].cached_until) == (later, later + timedelta(minutes=1))
    assert rows[a].key_digest == a.digest and rows[b].key_digest == b.digest
    assert rows[a].key_tag == rows[b].key_tag == a.key_tag  # kept for display

    # Both in one batch, b in another presentation form: still two rows, b's refreshed.
    again = later + timedelta(minutes=1)
    store.record_observations([], [sighting(a, "a:53", 3600),
                                   sighting(b, "a:53", 60, text=spaced(b))], again)
    rows = by_key(store.keys(ZONE))
    assert set(rows) == {a, b}
    assert rows[b].dnskey == b.text  # stored canonical
    assert (rows[a].first_seen, rows[a].last_seen) == (T0, again)
    assert (rows[b].first_seen, rows[b].last_seen) == (later, again)


def test_unparsable_dnskey_is_refused(store: StateStore) -> None:
    with pytest.raises(StateError, match="'257 3 13 !!' is not DNSKEY rdata text"):
        store.record_key(ZONE, "p0", "a:53", key_tag=1, algorithm=13, flags=257, role="ksk",
                         origin="", dnskey="257 3 13 !!", ttl=60, now=T0)


# -- migration 0006 ------------------------------------------------------------------

_OLD_KEYS = table(
    "observed_key",
    *(column(name, String()) for name in ("zone", "source", "server", "role", "origin")),
    *(column(name, Integer()) for name in ("key_tag", "algorithm", "flags", "ttl")),
    column("dnskey", Text()),
    *(column(name, UTCDateTime()) for name in ("first_seen", "last_seen", "cached_until")),
)


def _old_row(key: Key, server: str, origin: str, at: datetime, ttl: int, *,
             text: str = "", tag: int | None = None) -> dict[str, object]:
    return {"zone": ZONE, "source": "p0", "server": server, "role": "ksk", "origin": origin,
            "key_tag": key.key_tag if tag is None else tag, "algorithm": key.algorithm,
            "flags": key.flags, "ttl": ttl, "dnskey": text or key.text, "first_seen": at,
            "last_seen": at, "cached_until": at + timedelta(seconds=ttl)}


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), TABLES[0].metadata))
    finally:
        engine.dispose()


def migration_0006_over_old_rows(url: str, ksks: tuple[Key, Key]) -> None:
    """An 0005 database with keys (colliding ones under different owners, one in a
    non-canonical form, one key in two rows that only an inconsistent tag column kept
    apart) upgrades to rows identified by digest, and back down again."""
    a, b = ksks
    with StateStore(url) as old:
        old.migrate("0005")
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    rows = [_old_row(a, "a:53", "p0", T0, 3600),
            _old_row(b, "a:53", "p1", T0, 600),
            _old_row(b, "b:53", "p1", T0, 600, text=spaced(b)),
            _old_row(a, "b:53", "p0", t1, 3600),
            _old_row(a, "b:53", "p0", t2, 60, tag=a.key_tag ^ 1)]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(_OLD_KEYS), rows)
    finally:
        engine.dispose()

    with StateStore.open(url) as store:  # migrates to the head
        got = {(Key(r.dnskey), r.server): r for r in store.keys(ZONE)}
        assert set(got) == {(a, "a:53"), (b, "a:53"), (b, "b:53"), (a, "b:53")}
        for (key, _), row in got.items():
            assert (row.dnskey, row.key_digest) == (key.text, key.digest)
        merged = got[a, "b:53"]
        assert (merged.first_seen, merged.last_seen) == (t1, t2)
        assert merged.cached_until == t1 + timedelta(hours=1)
        # The migrated table takes a colliding key beside another at one server.
        store.record_observations([], [sighting(b, "a:53", 600, origin="p0")], t2)
        assert len(store.keys(ZONE)) == 5
    assert _schema_diff(url) == []

    # Downgrade: the old constraint cannot hold both colliding p0 rows at a:53; the one
    # seen last stays.
    command.downgrade(_alembic(url), "0005")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            left = conn.execute(_OLD_KEYS.select().where(_OLD_KEYS.c.server == "a:53",
                                                         _OLD_KEYS.c.origin == "p0")).all()
    finally:
        engine.dispose()
    assert [row.dnskey for row in left] == [b.text]
    with StateStore.open(url) as store:
        assert len(store.keys(ZONE)) == 4
    assert _schema_diff(url) == []


def test_migration_0006_over_old_rows(tmp_path: Path, ksks: tuple[Key, Key]) -> None:
    migration_0006_over_old_rows(f"sqlite:///{tmp_path / 'state.db'}", ksks)


def test_migration_0006_keeps_unparsable_old_text(tmp_path: Path) -> None:
    """Text that is no DNSKEY (never written by the controller) does not stop the upgrade."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with StateStore(url) as old:
        old.migrate("0005")
    junk = Key("257 3 13 " + base64.b64encode(b"\0" * 64).decode())
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(_OLD_KEYS), [_old_row(junk, "a:53", "", T0, 60,
                                                      text=" not a key ")])
    finally:
        engine.dispose()
    with StateStore.open(url) as store:
        [row] = store.keys(ZONE)
    assert row.dnskey == "not a key" and len(row.key_digest) == 64
