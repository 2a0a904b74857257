"""PostgreSQL: leases, the audit chain against tampering, and what a controller sharing a
server meets in operation (a stuck writer, dropped connections)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pgserver import PgServer

from core.errors import AuditError, StateError
from state import StateStore
from state.database import _PG_LOCK_KEY
from state.holders import process_holder

T0 = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
ZONE = "example.test."


def _note(store: StateStore, zone: str, n: int) -> None:
    store.append_history(zone, process_id=None, kind="note", from_state=None,
                         to_state=f"s{n}", actor="test", reason=f"event {n}",
                         evidence={"n": n, "seen": T0}, at=T0 + timedelta(seconds=n))


# -- leases --------------------------------------------------------------------------


def test_second_holder_is_refused_until_expiry_then_reclaims(store: StateStore) -> None:
    assert store.acquire_lease(ZONE, "ctl-a", 60, T0)
    assert not store.acquire_lease(ZONE, "ctl-b", 60, T0 + timedelta(seconds=59))
    assert store.acquire_lease("other.test.", "ctl-b", 60, T0)  # leases are per zone
    # Expired: taken over, with a new acquisition time.
    assert store.acquire_lease(ZONE, "ctl-b", 60, T0 + timedelta(seconds=61))
    lease = store.lease_info(ZONE)
    assert lease is not None
    assert (lease.holder, lease.acquired_at) == ("ctl-b", T0 + timedelta(seconds=61))
    assert not store.acquire_lease(ZONE, "ctl-a", 60, T0 + timedelta(seconds=62))
    assert not store.release_lease(ZONE, "ctl-a")


def test_lease_of_a_dead_local_controller_is_reclaimed_at_once(store: StateStore) -> None:
    # The holder id a controller that has exited had (state/holders.py).
    gone = subprocess.run([sys.executable, "-c", "from state.holders import process_holder; "
                           "print(process_holder())"], capture_output=True, text=True, check=True)
    dead = gone.stdout.strip()
    assert store.acquire_lease(ZONE, dead, 3600, T0)
    # A live holder on this host, one on another host, or an id that cannot prove which
    # process it was (an older version's host:pid), keeps it until it expires.
    assert store.acquire_lease("live.test.", process_holder(), 3600, T0)
    assert store.acquire_lease("remote.test.", "elsewhere:1", 3600, T0)
    old = f"{socket.gethostname()}:{dead.split(':')[1]}"
    assert store.acquire_lease("old.test.", old, 3600, T0)
    for zone in ("live.test.", "remote.test.", "old.test."):
        assert not store.acquire_lease(zone, "ctl-b", 60, T0 + timedelta(seconds=1))
    assert store.acquire_lease(ZONE, "ctl-b", 60, T0 + timedelta(seconds=1))
    lease = store.lease_info(ZONE)
    assert lease is not None and lease.holder == "ctl-b"


# -- the audit chain ---------------------------------------------------------------


@pytest.fixture
def chained(pg_server: PgServer, pg_db: str) -> str:
    """Five entries over two zones; returns the URL."""
    url = pg_server.url(pg_db)
    with StateStore.open(url) as store:
        for n in range(1, 6):
            _note(store, ZONE if n % 2 else "other.test.", n)
        report = store.verify_chain()
        assert (report.ok, report.checked) == (True, 5)
    return url


def _tamper(pg_server: PgServer, pg_db: str, sql: str) -> None:
    with pg_server.connect(pg_db) as conn:
        conn.execute(sql)


def test_verify_chain_catches_edited_evidence(chained: str, pg_server: PgServer,
                                              pg_db: str) -> None:
    _tamper(pg_server, pg_db,
            'UPDATE history SET evidence = \'{"n":99,"seen":"x"}\' WHERE seq = 3')
    with StateStore(chained) as store:
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq, report.checked) == (False, 3, 3)
    assert report.problem is not None and "edited" in report.problem
    with pytest.raises(AuditError, match="history entry seq 3"):
        report.raise_if_bad()


def test_verify_chain_catches_edited_time_deleted_row_and_changed_hash(
    chained: str, pg_server: PgServer, pg_db: str
) -> None:
    with StateStore(chained) as store:
        # One microsecond later: the timestamp survives the round trip exactly, so even
        # this shows.
        _tamper(pg_server, pg_db,
                "UPDATE history SET at = at + interval '1 microsecond' WHERE seq = 4")
        assert (store.verify_chain().ok, store.verify_chain().first_bad_seq) == (False, 4)
        _tamper(pg_server, pg_db,
                "UPDATE history SET at = at - interval '1 microsecond' WHERE seq = 4")
        assert store.verify_chain().ok
        _tamper(pg_server, pg_db, f"UPDATE history SET hash = '{'f' * 64}' WHERE seq = 2")
        assert store.verify_chain().first_bad_seq == 2
        _tamper(pg_server, pg_db, "DELETE FROM history WHERE seq = 2")
        report = store.verify_chain()
        assert (report.first_bad_seq, report.problem) == (
            3, "entry 2 missing before it (deleted)")


def test_audit_verify_command(chained: str, pg_server: PgServer, pg_db: str,
                              repo_root: Path, tmp_path: Path) -> None:
    """``multisigner audit verify`` against PostgreSQL: exit 0 on the intact chain, 1 and
    the bad entry after one row was edited."""
    config = tmp_path / "multisigner.toml"
    config.write_text(f'[state]\nurl = "{chained}"\n')

    def audit() -> tuple[int, dict[str, object]]:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "--config", str(config), "audit",
             "verify", "--json"],
            capture_output=True, text=True, cwd=repo_root, timeout=60, check=False,
        )
        return done.returncode, json.loads(done.stdout)

    code, report = audit()
    assert (code, {k: report[k] for k in ("ok", "checked", "first_bad_seq", "problem")}) == (
        0, {"ok": True, "checked": 5, "first_bad_seq": None, "problem": None})
    assert report["authenticated"] is False and report["note"]  # no [history] key here
    _tamper(pg_server, pg_db, "UPDATE history SET reason = 'nothing to see' WHERE seq = 5")
    code, report = audit()
    assert (code, report["ok"], report["first_bad_seq"]) == (1, False, 5)


# -- operation -----------------------------------------------------------------------


def test_a_stuck_writer_makes_others_fail_after_the_busy_timeout(
    pg_server: PgServer, pg_db: str
) -> None:
    """A controller hung inside a write transaction holds the write lock: the others give
    up after their busy timeout with a clear error (as on SQLite), instead of hanging for
    as long as the hung one does; readers are not blocked at all."""
    url = pg_server.url(pg_db)
    StateStore.open(url).close()
    with pg_server.connect(pg_db) as stuck, StateStore(url, busy_timeout=0.5) as store:
        stuck.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK_KEY,))
        assert store.history(ZONE) == []
        outcome: list[BaseException | None] = []

        def write() -> None:
            try:
                _note(store, ZONE, 1)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        started = time.monotonic()
        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=15)
        waited = time.monotonic() - started
        stuck.execute("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_KEY,))
        writer.join()  # a writer that would wait forever gets the lock now
        assert waited < 15, "the writer waited for the stuck one without limit"
        [error] = outcome
        assert isinstance(error, StateError)
        assert re.search(r"lock timeout; another writer held it for more than the busy "
                         r"timeout \(0\.5s\)", str(error)), error
        assert waited > 0.4
        _note(store, ZONE, 1)  # the failed attempt left nothing behind
        assert [e.seq for e in store.history(ZONE)] == [1]


def test_dropped_connections_are_replaced(pg_server: PgServer, pg_db: str) -> None:
    """A server restart or failover kills every pooled connection; the controller's next
    reads and writes must simply reconnect."""
    url = pg_server.url(pg_db)
    with StateStore.open(url) as store:
        for n in range(3):  # leaves an idle connection in the pool
            _note(store, ZONE, n)
        with pg_server.connect(pg_db) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (pg_db,)
            ).fetchall()
        assert killed and all(ok for (ok,) in killed)
        assert len(store.history(ZONE)) == 3
        _note(store, ZONE, 3)
        assert store.acquire_lease(ZONE, "ctl-a", 60, T0)
        assert store.verify_chain().ok


def test_plain_postgresql_url_uses_psycopg(pg_server: PgServer, pg_db: str) -> None:
    url = pg_server.url(pg_db).replace("postgresql+psycopg://", "postgresql://")
    with StateStore.open(url) as store:
        _note(store, ZONE, 1)
        assert store.url.startswith("postgresql://")
        assert [e.to_state for e in store.history(ZONE)] == ["s1"]
