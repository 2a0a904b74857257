"""PostgreSQL: migrations, the schema they create, timestamps, and error reporting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from pgserver import SERVER_TIMEZONE, PgServer, free_port
from psycopg.errors import UniqueViolation
from sqlalchemy import create_engine, inspect

from core.errors import StateError
from state import StateStore
from state.database import MIGRATIONS_DIR
from state.models import TABLE_NAMES, TABLES

T0 = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
ZONE = "example.test."


def _head() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def _note(store: StateStore, n: int, at: datetime = T0) -> None:
    store.append_history(ZONE, process_id=None, kind="note", from_state=None,
                         to_state=f"s{n}", actor="test", reason=f"event {n}",
                         evidence={"n": n, "seen": at}, at=at)


def test_migrations_create_every_table(pg_url: str) -> None:
    StateStore.open(pg_url).close()
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == TABLE_NAMES | {"alembic_version"}
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
            # The hand-written migrations and the models must describe the same schema on
            # PostgreSQL too (types, nullability, indexes incl. the partial one).
            diff = compare_metadata(MigrationContext.configure(conn), TABLES[0].metadata)
            naive = conn.exec_driver_sql(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'"
            ).all()
    finally:
        engine.dispose()
    assert version == [(_head(),)]
    assert diff == []
    assert naive == []  # every timestamp is timestamptz


def test_open_twice_is_idempotent(pg_url: str) -> None:
    with StateStore.open(pg_url) as first:
        _note(first, 1)
    with StateStore.open(pg_url) as second:
        second.migrate()  # and a third time, on an open store
        assert [h.to_state for h in second.history(ZONE)] == ["s1"]
        assert second.verify_chain().ok


def test_one_running_process_per_zone_is_enforced_by_the_database(
    pg_server: PgServer, pg_db: str
) -> None:
    """The partial unique index holds even against a writer that bypasses the store."""
    with StateStore.open(pg_server.url(pg_db)) as store:
        store.start_process(ZONE, "sync", signer=None, actor="a", reason="r", state="plan",
                            now=T0)
    insert = (
        "INSERT INTO process (id, zone, kind, state, status, started_at, updated_at, data, "
        "actor) VALUES (%s, %s, 'sync', 'plan', %s, now(), now(), '{}', 'foreign')"
    )
    with pg_server.connect(pg_db) as conn:
        [(indexdef,)] = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_process_running_zone'"
        ).fetchall()
        assert indexdef.startswith("CREATE UNIQUE INDEX")
        assert "WHERE ((status)::text = 'running'::text)" in indexdef
        conn.execute(insert, ("p-done", ZONE, "done"))  # finished ones do not count
        conn.execute(insert, ("p-other", "other.test.", "running"))
        with pytest.raises(UniqueViolation, match="uq_process_running_zone"):
            conn.execute(insert, ("p-second", ZONE, "running"))


def test_unmigrated_database_is_reported(pg_url: str) -> None:
    with StateStore(pg_url) as raw, pytest.raises(StateError, match="migrated"):
        raw.history(ZONE)


def test_unreachable_server_is_reported_without_the_password() -> None:
    url = f"postgresql+psycopg://ctl:s3cret@127.0.0.1:{free_port()}/nope"
    with StateStore(url) as store, pytest.raises(StateError) as info:
        store.history(ZONE)
    message = str(info.value)
    assert "s3cret" not in message
    assert "ctl:***@127.0.0.1" in message
    assert store.url.startswith("postgresql+psycopg://ctl:***@")


# -- timestamps ----------------------------------------------------------------------


def test_aware_datetimes_round_trip_in_utc(pg_server: PgServer, pg_db: str) -> None:
    """The server runs in a far-from-UTC zone and the caller passes yet another offset:
    what comes back is the same instant, as an aware UTC datetime."""
    ist = timezone(timedelta(hours=5, minutes=30))
    seen = T0.astimezone(ist)
    deadline = datetime(2027, 3, 1, 0, 0, 0, 999999, tzinfo=timezone(timedelta(hours=-8)))
    with StateStore.open(pg_server.url(pg_db)) as store:
        store.record_rrset(ZONE, "p0", "a:53", rrtype="DNSKEY", text="k", ttl=600, now=seen)
        process = store.start_process(ZONE, "sync", signer=None, actor="a", reason="r",
                                      state="plan", next_check_at=deadline, now=seen)
        assert store.acquire_lease(ZONE, "ctl-a", 60, seen)
        _note(store, 1, at=seen)

        [row] = store.cached_rrsets(ZONE, "DNSKEY", T0)
        got = store.get_process(process.id)
        lease = store.lease_info(ZONE)
        entries = store.history(ZONE)
        assert got is not None and lease is not None
        values = [row.first_seen, row.last_seen, row.cached_until, got.started_at,
                  got.next_check_at, lease.acquired_at, lease.expires_at,
                  store.earliest_deadline(), *(e.at for e in entries)]
        for value in values:
            assert value is not None and value.tzinfo is UTC
        assert (row.first_seen, row.cached_until) == (T0, T0 + timedelta(seconds=600))
        assert got.next_check_at == deadline == store.earliest_deadline()
        assert lease.expires_at == T0 + timedelta(seconds=60)
        assert {e.as_json()["at"] for e in entries} == {"2026-11-25T12:00:00.123456Z"}
        # The TTL window compares instants, whatever zone the bound value was given in.
        edge = (T0 + timedelta(seconds=600)).astimezone(deadline.tzinfo)
        assert len(store.cached_rrsets(ZONE, "DNSKEY", edge)) == 1
        assert store.cached_rrsets(ZONE, "DNSKEY", edge + timedelta(microseconds=1)) == []
        # The hashes were computed from the values as written; they verify as read back.
        assert store.verify_chain().ok

    with pg_server.connect(pg_db) as conn:
        [(tz, stored)] = conn.execute(
            "SELECT current_setting('TimeZone'), "
            "to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') "
            "FROM observed_rrset"
        ).fetchall()
    assert (tz, stored) == (SERVER_TIMEZONE, "2026-11-25 12:00:00.123456")


def test_session_timezone_of_the_client_does_not_matter(pg_server: PgServer,
                                                         pg_db: str) -> None:
    """Two controllers whose connections use different TimeZone settings agree."""
    base = pg_server.url(pg_db)
    kolkata = base + "?options=-c%20TimeZone%3DAsia%2FKolkata"
    with StateStore.open(base) as one, StateStore.open(kolkata) as two:
        one.record_rrset(ZONE, "p0", "a:53", rrtype="DS", text="ds", ttl=60, now=T0)
        _note(two, 1)
        [a], [b] = one.cached_rrsets(ZONE, "DS", T0), two.cached_rrsets(ZONE, "DS", T0)
        assert a == b
        assert a.last_seen == T0
        assert one.history(ZONE) == two.history(ZONE)
        assert two.verify_chain().ok
