"""The authenticated history on PostgreSQL: the reproduced rewrite attack, truncation
against an exported checkpoint, migration 0003 over a history written before it and its
seal, and two controllers sharing one database and one key (a replica pair).

The scenarios are the SQLite unit tests' own helpers (tests/unit/test_audit_auth.py,
loaded by path), run here against a real server.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from state import StateStore
from state.checkpoint import authenticate, parse_checkpoint


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "unit" / "test_audit_auth.py"
    spec = importlib.util.spec_from_file_location("pg_reused_test_audit_auth", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


auth = _load()
KEY = auth.KEY


def test_rewrite_with_recomputed_chain_is_detected(pg_url: str) -> None:
    auth.filled(pg_url)
    auth.attack(pg_url)
    with StateStore(pg_url) as plain:
        assert plain.verify_chain().ok  # the plain chain alone is fooled
    with StateStore(pg_url, history_key=KEY) as store:
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "MAC does not verify" in str(report.problem)


def test_truncation_is_detected_against_a_checkpoint(pg_url: str) -> None:
    auth.filled(pg_url)
    with StateStore(pg_url, history_key=KEY) as store:
        exported = json.dumps(store.checkpoint(auth.T0).as_json())
    checkpoint = parse_checkpoint(exported, "cp.json")
    authenticate(checkpoint, KEY, "cp.json")
    auth.sql(pg_url, "DELETE FROM history WHERE seq >= 4")
    with StateStore(pg_url, history_key=KEY) as store:
        assert store.verify_chain().ok
        report = store.verify_chain(checkpoint)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "entries 4..5 were deleted (truncated)" in str(report.problem)


def test_migration_0003_over_an_old_history_then_seal(pg_url: str) -> None:
    with StateStore(pg_url) as old:
        old.migrate("0002")
    auth.insert_legacy(pg_url, 3)
    with StateStore.open(pg_url, history_key=KEY) as store:
        assert [e.mac for e in store.history()] == [None, None, None]
        assert store.verify_chain().ok is False  # a key, and not one MAC: must seal
        auth.note(store, 4)
        report = store.verify_chain()
        assert (report.ok, report.unauthenticated, report.first_authenticated) == (True, 3, 4)
        result = store.seal_history(actor="cli:alice", reason="checked", now=auth.T0)
        assert result is not None and (result.sealed, result.entry.seq) == (3, 5)
        report = store.verify_chain()
        assert (report.ok, report.checked, report.unauthenticated) == (True, 5, 0)


def test_replica_pair_shares_the_key(pg_url: str) -> None:
    """Two controllers on one database interleave authenticated entries; one started
    without the key is refused before it writes an entry nobody could verify."""
    with (StateStore.open(pg_url, history_key=KEY) as one,
          StateStore.open(pg_url, history_key=KEY) as two):
        for n in range(1, 7):
            auth.note(one if n % 2 else two, n)
        report = one.verify_chain()
        assert (report.ok, report.authenticated) == (True, 6)
    with StateStore(pg_url) as keyless, pytest.raises(Exception, match="no \\[history\\] key"):
        auth.note(keyless, 7)
