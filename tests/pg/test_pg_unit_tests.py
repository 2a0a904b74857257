"""The backend-independent unit tests of state/, run unchanged against PostgreSQL.

They are loaded from tests/unit by path (that directory is not a package) and take this
directory's ``store`` fixture, a migrated store on a fresh PostgreSQL database, instead of
their own SQLite one. The SQLite-specific tests there (file paths, WAL, sqlite3 tampering,
threads) have PostgreSQL counterparts in the other test_pg_* modules.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from core.keys import Key


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
