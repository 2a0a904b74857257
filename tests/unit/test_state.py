"""Unit tests of state/: schema and migrations, observations, leases.

Processes and the history chain are in test_state_history.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from core.errors import StateError
from state import KeyRecord, RRsetRecord, StateStore
from state.canonical import sha256_hex
from state.models import TABLE_NAMES, TABLES

T0 = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
ZONE = "example.test."


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = "sqlite://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"
    with StateStore.open(url) as opened:
        yield opened


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def _history_event(store: StateStore, zone: str, n: int) -> None:
    store.append_history(
        zone,
        process_id=None,
        kind="note",
        from_state=None,
        to_state=f"s{n}",
        actor="test",
        reason=f"event {n}",
        evidence={"n": n, "seen": T0},
        at=T0 + timedelta(seconds=n),
    )


# -- schema --------------------------------------------------------------------------


def test_migrations_create_every_table(db_file: Path) -> None:
    StateStore.open(f"sqlite:///{db_file}").close()
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == TABLE_NAMES | {"alembic_version"}
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            # The hand-written migration and the models must describe the same schema.
            diff = compare_metadata(MigrationContext.configure(conn), TABLES[0].metadata)
    finally:
        engine.dispose()
    assert journal == "wal"
    assert diff == []


def test_open_twice_is_idempotent(db_file: Path) -> None:
    url = f"sqlite:///{db_file}"
    with StateStore.open(url) as first:
        _history_event(first, ZONE, 1)
    with StateStore.open(url) as second:
        assert [h.to_state for h in second.history(ZONE)] == ["s1"]


def test_bad_urls_raise_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="not a valid URL"):
        StateStore("not a url")
    missing = tmp_path / "nope" / "state.db"
    with pytest.raises(StateError, match=r"does not exist.*\[state\] url"):
        StateStore(f"sqlite:///{missing}")
    with pytest.raises(StateError, match="not supported"):
        StateStore("mysql://host/db")


def test_unmigrated_database_is_reported(db_file: Path) -> None:
    with StateStore(f"sqlite:///{db_file}") as raw, pytest.raises(StateError, match="migrated"):
        raw.history(ZONE)


def test_naive_datetimes_are_refused(store: StateStore) -> None:
    with pytest.raises(StateError, match="no timezone"):
        store.cached_rrsets(ZONE, "DNSKEY", datetime(2026, 1, 1))


# -- observations --------------------------------------------------------------------


def test_record_rrset_upserts(store: StateStore) -> None:
    text = "example.test. 3600 IN DNSKEY 257 3 13 AAAA\n"
    store.record_rrset(ZONE, "p0", "127.0.0.1:5301", rrtype="DNSKEY", text=text, ttl=3600, now=T0)
    later = T0 + timedelta(minutes=10)
    store.record_rrset(ZONE, "p0", "127.0.0.1:5301", rrtype="dnskey", text=text, ttl=300, now=later)
    [row] = store.cached_rrsets(ZONE, "DNSKEY", later)
    assert row.digest == sha256_hex(text)
    assert (row.first_seen, row.last_seen, row.ttl) == (T0, later, 300)
    # A resolver that fetched it at T0 with TTL 3600 may hold it until T0 + 1h, even
    # though the latest sighting has a shorter TTL.
    assert row.cached_until == T0 + timedelta(hours=1)
    assert row.records == ["example.test. 3600 IN DNSKEY 257 3 13 AAAA"]


def test_cached_rrsets_window(store: StateStore) -> None:
    old, new = "old-dnskey-set", "new-dnskey-set"
    store.record_rrset(ZONE, "p0", "a:53", rrtype="DNSKEY", text=old, ttl=600, now=T0)
    store.record_rrset(ZONE, "p1", "b:53", rrtype="DNSKEY", text=old, ttl=600, now=T0)
    changed = T0 + timedelta(seconds=300)
    store.record_rrset(ZONE, "p0", "a:53", rrtype="DNSKEY", text=new, ttl=600, now=changed)
    store.record_rrset(ZONE, "p0", "a:53", rrtype="CDS", text="cds", ttl=600, now=changed)

    def texts(at: datetime) -> list[str]:
        return sorted(r.text for r in store.cached_rrsets(ZONE, "DNSKEY", at))

    assert texts(T0 + timedelta(seconds=600)) == [new, old, old]  # boundary: still cached
    assert texts(T0 + timedelta(seconds=601)) == [new]
    assert texts(changed + timedelta(seconds=601)) == []
    assert store.cached_rrsets("other.test.", "DNSKEY", T0) == []


def test_record_observations_batch(store: StateStore) -> None:
    servers = [f"192.0.2.{i}:53" for i in range(600)]
    rrsets = [RRsetRecord(ZONE, "p0", s, "DNSKEY", "same-set", 3600) for s in servers]
    keys = [
        KeyRecord(ZONE, "p0", s, 12345, 13, 257, "ksk", "p0", "257 3 13 AAAA", 3600)
        for s in servers
    ]
    store.record_observations(rrsets, keys, T0)
    store.record_observations(rrsets, keys, T0 + timedelta(seconds=30))
    cached = store.cached_rrsets(ZONE, "DNSKEY", T0)
    assert len(cached) == 600
    assert {r.last_seen for r in cached} == {T0 + timedelta(seconds=30)}
    observed = store.keys(ZONE)
    assert len(observed) == 600
    assert {(k.key_tag, k.role, k.origin, k.first_seen) for k in observed} == {
        (12345, "ksk", "p0", T0)
    }


def test_record_key_upserts_and_validates_role(store: StateStore) -> None:
    for n in range(2):
        store.record_key(
            ZONE,
            "p1",
            "b:53",
            key_tag=4242,
            algorithm=13,
            flags=256,
            role="zsk",
            origin="p0",
            dnskey="256 3 13 BBBB",
            ttl=300,
            now=T0 + timedelta(seconds=n),
        )
    [key] = store.keys(ZONE)
    assert (key.first_seen, key.last_seen, key.origin) == (T0, T0 + timedelta(seconds=1), "p0")
    with pytest.raises(StateError, match="role 'kzk'"):
        store.record_key(
            ZONE,
            "p1",
            "b:53",
            key_tag=1,
            algorithm=13,
            flags=256,
            role="kzk",
            origin="",
            dnskey="x",
            ttl=300,
            now=T0,
        )


# -- leases --------------------------------------------------------------------------


def test_lease_held_by_other_is_refused_and_expired_is_taken(store: StateStore) -> None:
    assert store.acquire_lease(ZONE, "ctl-a", 60, T0)
    assert store.acquire_lease(ZONE, "ctl-a", 60, T0 + timedelta(seconds=30))  # extends
    assert not store.acquire_lease(ZONE, "ctl-b", 60, T0 + timedelta(seconds=89))
    assert store.acquire_lease(ZONE, "ctl-b", 60, T0 + timedelta(seconds=91))  # expired
    lease = store.lease_info(ZONE)
    assert lease is not None
    assert (lease.holder, lease.expires_at) == ("ctl-b", T0 + timedelta(seconds=151))
    assert not store.release_lease(ZONE, "ctl-a")
    assert store.release_lease(ZONE, "ctl-b")
    assert store.lease_info(ZONE) is None


def test_lease_context_manager(store: StateStore) -> None:
    with store.lease(ZONE, "ctl-a", 60) as held:
        assert held.holder == "ctl-a"
        with (
            pytest.raises(StateError, match=rf"zone {ZONE} is being handled by ctl-a until"),
            store.lease(ZONE, "ctl-b", 60),
        ):
            pass
    assert store.lease_info(ZONE) is None  # released on exit
    with store.lease(ZONE, "ctl-b", 60):
        pass
