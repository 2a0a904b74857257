"""Unit tests of state/: processes, history, the tamper-evident chain, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import AuditError, StateError
from state import StateStore

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


# -- processes -----------------------------------------------------------------------


def _start(store: StateStore, zone: str = ZONE) -> str:
    process = store.start_process(
        zone,
        "zsk-rollover",
        signer="p0",
        actor="cli:alice",
        reason="scheduled roll",
        state="publish-new-zsk",
        data={"old": 1111},
        evidence={"dnskey": ["a"]},
        now=T0,
    )
    return process.id


def test_start_process_refuses_a_second_running_process(store: StateStore) -> None:
    first = _start(store)
    with pytest.raises(StateError) as info:
        store.start_process(
            ZONE, "sync", signer=None, actor="daemon", reason="drift", state="plan", now=T0
        )
    message = str(info.value)
    assert f"zone {ZONE} already has a running zsk-rollover process {first}" in message
    assert "state publish-new-zsk, started 2026-11-25T12:00:00.123456Z" in message
    assert "finish or abort it first" in message
    # The refusal left no trace; another zone is independent.
    assert len(store.history(ZONE)) == 1
    _start(store, "other.test.")


def test_transition_updates_process_and_appends_history(store: StateStore) -> None:
    pid = _start(store)
    check = T0 + timedelta(hours=1)
    moved = store.transition(
        pid,
        "wait-dnskey-ttl",
        actor="daemon",
        reason="new ZSK seen at every server",
        evidence={"servers": 4},
        waiting_for="DNSKEY TTL",
        next_check_at=check,
        data={"old": 1111, "new": 2222},
        now=T0 + timedelta(seconds=5),
    )
    assert (moved.state, moved.status, moved.next_check_at) == ("wait-dnskey-ttl", "running", check)
    assert moved.data == {"new": 2222, "old": 1111}
    assert store.active_process(ZONE) == moved
    assert store.earliest_deadline() == check
    assert store.due_processes(check - timedelta(seconds=1)) == []
    assert [p.id for p in store.due_processes(check)] == [pid]

    done = store.transition(
        pid, "done", actor="daemon", reason="old ZSK gone", status="done", now=check
    )
    assert (done.status, done.finished_at, done.next_check_at) == ("done", check, None)
    assert store.active_process(ZONE) is None
    assert store.earliest_deadline() is None
    assert [p.id for p in store.processes(zone=ZONE, status="done")] == [pid]
    with pytest.raises(StateError, match="no process nope"):
        store.transition("nope", "x", actor="x", reason="y")
    with pytest.raises(StateError, match="already done"):
        store.transition(pid, "again", actor="x", reason="y")
    steps = [(h.from_state, h.to_state, h.process_id) for h in store.history(ZONE)]
    assert steps == [
        (None, "publish-new-zsk", pid),
        ("publish-new-zsk", "wait-dnskey-ttl", pid),
        ("wait-dnskey-ttl", "done", pid),
    ]
    _start(store)  # the zone is free again


def test_secrets_are_refused(store: StateStore) -> None:
    with pytest.raises(StateError, match="credential"):
        _history_event_with(store, {"provider": {"api_key": "hunter2"}})
    with pytest.raises(StateError, match="credential"):
        store.start_process(
            ZONE,
            "sync",
            signer=None,
            actor="a",
            reason="r",
            state="s",
            data={"tsig_secret": "c2VjcmV0"},
        )
    assert store.history(ZONE) == []


def _history_event_with(store: StateStore, evidence: dict[str, object]) -> None:
    store.append_history(
        ZONE,
        process_id=None,
        kind="note",
        from_state=None,
        to_state="x",
        actor="a",
        reason="r",
        evidence=evidence,
    )


# -- history and its chain -----------------------------------------------------------


def test_history_order_and_json_shape(store: StateStore) -> None:
    pid = _start(store)
    _history_event(store, "other.test.", 1)
    store.transition(pid, "next", actor="daemon", reason="ok", now=T0 + timedelta(seconds=9))
    entries = store.history(ZONE)
    assert [e.seq for e in entries] == [1, 3]
    item = entries[0].as_json()
    assert set(item) == {
        "seq",
        "zone",
        "process_id",
        "kind",
        "from_state",
        "to_state",
        "at",
        "actor",
        "reason",
        "evidence",
        "hash",
    }
    assert item["at"] == "2026-11-25T12:00:00.123456Z"
    assert item["evidence"] == {"dnskey": ["a"]}
    assert (item["kind"], item["actor"], item["process_id"]) == ("zsk-rollover", "cli:alice", pid)
    assert entries[1].as_json()["at"] == "2026-11-25T12:00:09.123456Z"
    [other] = store.history("other.test.")
    assert other.evidence == {"n": 1, "seen": "2026-11-25T12:00:00.123456Z"}
    assert [e.seq for e in store.history()] == [1, 2, 3]
    first, second = store.history()[:2]
    assert first.prev_hash == "0" * 64
    assert second.prev_hash == first.hash


def _tampered(db_file: Path, sql: str) -> StateStore:
    url = f"sqlite:///{db_file}"
    with StateStore.open(url) as store:
        for n in range(1, 6):
            _history_event(store, ZONE if n % 2 else "other.test.", n)
        report = store.verify_chain()
        assert (report.ok, report.checked, report.first_bad_seq) == (True, 5, None)
    conn = sqlite3.connect(db_file)
    with conn:
        conn.executescript(sql)
    conn.close()
    return StateStore(url)


def test_verify_chain_catches_edited_evidence(db_file: Path) -> None:
    with _tampered(
        db_file, 'UPDATE history SET evidence = \'{"n":99,"seen":"x"}\' WHERE seq = 3'
    ) as store:
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq, report.checked) == (False, 3, 3)
    assert report.problem is not None and "edited" in report.problem
    with pytest.raises(AuditError, match="history entry seq 3"):
        report.raise_if_bad()


def test_verify_chain_catches_deleted_middle_row(db_file: Path) -> None:
    with _tampered(db_file, "DELETE FROM history WHERE seq = 3") as store:
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert report.problem is not None and "entry 3 missing" in report.problem


def test_verify_chain_catches_changed_hash(db_file: Path) -> None:
    with _tampered(db_file, f"UPDATE history SET hash = '{'f' * 64}' WHERE seq = 2") as store:
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_verify_chain_catches_reordered_rows(db_file: Path) -> None:
    # Entries 2 and 4 trade places, each keeping its own content and hash.
    sql = """
        CREATE TEMP TABLE moved AS SELECT * FROM history WHERE seq IN (2, 4);
        DELETE FROM history WHERE seq IN (2, 4);
        INSERT INTO history SELECT CASE seq WHEN 2 THEN 4 ELSE 2 END, zone, process_id, kind,
            from_state, to_state, at, actor, reason, evidence, prev_hash, hash, mac FROM moved;
    """
    with _tampered(db_file, sql) as store:
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_concurrent_writers_keep_one_chain(db_file: Path) -> None:
    url = f"sqlite:///{db_file}"
    StateStore.open(url).close()
    stores = [StateStore(url), StateStore(url)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(store: StateStore, name: str) -> None:
        try:
            start.wait()
            for n in range(25):
                _history_event(store, name, n)
                if n % 5 == 0:
                    store.record_rrset(
                        name, "p0", "a:53", rrtype="SOA", text=str(n), ttl=60, now=T0
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(stores[i % 2], f"z{i}.test.")) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = stores[0].verify_chain()
    for store in stores:
        store.close()
    assert errors == []
    assert (report.ok, report.checked) == (True, 100)
