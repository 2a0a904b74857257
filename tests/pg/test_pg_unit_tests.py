"""The backend-independent unit tests of state/, run unchanged against PostgreSQL.

They are loaded from tests/unit by path (that directory is not a package) and take this
directory's ``store`` fixture, a migrated store on a fresh PostgreSQL database, instead of
their own SQLite one. The SQLite-specific tests there (file paths, WAL, sqlite3 tampering,
threads) have PostgreSQL counterparts in the other test_pg_* modules. Migration 0006 (observed
keys by digest) is also run here, on data, online and as the offline SQL script.
"""

from __future__ import annotations

import importlib.util
import io
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
from alembic import command
from pgserver import PgServer
from sqlalchemy import create_engine, insert

from core.keys import Key
from state import StateStore


def _load(name: str) -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "unit" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pg_reused_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_state = _load("test_state")
_history = _load("test_state_history")
_keys = _load("test_state_observed_keys")

test_naive_datetimes_are_refused = _state.test_naive_datetimes_are_refused
test_record_rrset_upserts = _state.test_record_rrset_upserts
test_cached_rrsets_window = _state.test_cached_rrsets_window
test_record_observations_batch = _state.test_record_observations_batch
test_record_key_upserts_and_validates_role = _state.test_record_key_upserts_and_validates_role
test_lease_held_by_other_is_refused_and_expired_is_taken = (
    _state.test_lease_held_by_other_is_refused_and_expired_is_taken
)
test_lease_context_manager = _state.test_lease_context_manager

test_start_process_refuses_a_second_running_process = (
    _history.test_start_process_refuses_a_second_running_process
)
test_transition_updates_process_and_appends_history = (
    _history.test_transition_updates_process_and_appends_history
)
test_secrets_are_refused = _history.test_secrets_are_refused
test_history_order_and_json_shape = _history.test_history_order_and_json_shape

test_colliding_keys_at_one_server_keep_their_own_rows = (
    _keys.test_colliding_keys_at_one_server_keep_their_own_rows
)
test_unparsable_dnskey_is_refused = _keys.test_unparsable_dnskey_is_refused


@pytest.fixture(scope="module")
def ksks() -> tuple[Key, Key]:
    return _keys.colliding_keys(257)


def test_migration_0006_over_old_rows(pg_url: str, ksks: tuple[Key, Key]) -> None:
    """0005 rows get their key digests, then back down and up again, on PostgreSQL."""
    _keys.migration_0006_over_old_rows(pg_url, ksks)


def _offline_script(url: str, revisions: str, *, down: bool = False) -> str:
    config = _keys._alembic(url)
    config.output_buffer = io.StringIO()
    (command.downgrade if down else command.upgrade)(config, revisions, sql=True)
    script = config.output_buffer.getvalue()
    assert isinstance(script, str)
    return script


def test_migration_0006_as_an_offline_script(pg_server: PgServer, pg_db: str,
                                             ksks: tuple[Key, Key]) -> None:
    """``alembic upgrade 0005:0006 --sql``, run by a DBA: PostgreSQL computes the same
    digests; the downgrade script keeps the last seen of two colliding rows."""
    a, b = ksks
    url = pg_server.url(pg_db)
    with StateStore(url) as old:
        old.migrate("0005")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(_keys._OLD_KEYS), [
                _keys._old_row(a, "a:53", "p0", _keys.T0, 60),
                _keys._old_row(b, "a:53", "p1", _keys.T0, 60)])
    finally:
        engine.dispose()
    with pg_server.connect(pg_db) as conn:
        conn.execute(_offline_script(url, "0005:0006"))
    with StateStore.open(url) as store:
        assert {Key(r.dnskey): r.key_digest for r in store.keys(_keys.ZONE)} == {
            a: a.digest, b: b.digest}
        later = _keys.T0 + timedelta(minutes=1)
        store.record_observations([], [_keys.sighting(b, "a:53", 60, origin="p0")], later)
        assert len(store.keys(_keys.ZONE)) == 3
    with pg_server.connect(pg_db) as conn:
        conn.execute(_offline_script(url, "0006:0005", down=True))
        left = conn.execute("SELECT origin, dnskey FROM observed_key ORDER BY origin").fetchall()
    assert left == [("p0", b.text), ("p1", b.text)]
