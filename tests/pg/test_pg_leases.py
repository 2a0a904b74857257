"""The lease and fencing unit tests (tests/unit/test_leases.py) that depend on the
database, run unchanged against PostgreSQL (loaded by path, as test_pg_unit_tests.py
does, taking this directory's ``store`` fixture: a migrated store on a fresh database).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "unit" / "test_leases.py"
_spec = importlib.util.spec_from_file_location("pg_reused_test_leases", _path)
assert _spec is not None and _spec.loader is not None
_leases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_leases)

test_two_same_host_pid_1_holders_do_not_share_a_lease = (
    _leases.test_two_same_host_pid_1_holders_do_not_share_a_lease)
test_a_dead_holder_of_this_namespace_is_taken_over_before_expiry = (
    _leases.test_a_dead_holder_of_this_namespace_is_taken_over_before_expiry)
test_fenced_writes_need_the_zone_lease = _leases.test_fenced_writes_need_the_zone_lease
test_an_expired_lease_fences_its_own_holder = _leases.test_an_expired_lease_fences_its_own_holder
test_unfenced_writes_work_without_a_lease = _leases.test_unfenced_writes_work_without_a_lease
test_zone_lease_renews_while_work_runs_and_releases = (
    _leases.test_zone_lease_renews_while_work_runs_and_releases)
test_zone_lease_refuses_a_zone_held_by_another = (
    _leases.test_zone_lease_refuses_a_zone_held_by_another)
test_a_lost_lease_cancels_the_work = _leases.test_a_lost_lease_cancels_the_work
test_an_outside_cancel_is_not_turned_into_a_lost_lease = (
    _leases.test_an_outside_cancel_is_not_turned_into_a_lost_lease)
