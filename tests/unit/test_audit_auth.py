"""The authenticated history: per-entry MACs under the ``[history]`` key, exported
checkpoints, sealing a history written before the key existed.

The attack these tests reproduce: someone with write access to the state database (not to
the key) edits an entry's actor and reason, deletes the newest entry, and recomputes the
whole chain with the project's own ``entry_hash``. The plain chain then verifies; the MACs
must not. The helpers work through SQLAlchemy on any URL, so tests/pg reuses them on
PostgreSQL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text
from sqlmodel import Session, SQLModel, col, select

from core.config import load_config
from core.errors import AuditError, ConfigError, StateError, UsageError
from orchestrator.audit_commands import history_key
from orchestrator.cli import main
from state import StateStore
from state.audit import HistoryInfo, entry_hash
from state.canonical import canonical_json, rfc3339
from state.checkpoint import authenticate, parse_checkpoint
from state.history_key import HistoryKey
from state.models import ZERO_HASH, HistoryEntry

T0 = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
ZONE = "example.test."
KEY = HistoryKey(b"k" * 32)
OTHER_KEY = HistoryKey(b"o" * 32)
HISTORY = SQLModel.metadata.tables["history"]


def note(store: StateStore, n: int, zone: str = ZONE) -> None:
    store.append_history(zone, process_id=None, kind="note", from_state=None,
                         to_state=f"s{n}", actor="cli:alice", reason=f"event {n}",
                         evidence={"n": n}, at=T0 + timedelta(seconds=n))


def filled(url: str, count: int = 5, key: HistoryKey | None = KEY) -> str:
    with StateStore.open(url, history_key=key) as store:
        for n in range(1, count + 1):
            note(store, n)
    return url


def attack(url: str, edit_seq: int = 3) -> None:
    """Edit actor/reason of *edit_seq*, delete the newest entry, recompute the chain."""
    engine = create_engine(url)
    try:
        with Session(engine) as session, session.begin():
            rows = list(session.exec(select(HistoryEntry).order_by(col(HistoryEntry.seq))))
            target = rows[edit_seq - 1]
            target.actor, target.reason = "cli:mallory", "nothing to see"
            session.delete(rows[-1])
            prev = ZERO_HASH
            for row in rows[:-1]:
                content = HistoryInfo.from_row(row).as_json()
                del content["hash"]
                row.prev_hash, row.hash = prev, entry_hash(prev, content)
                prev = row.hash
    finally:
        engine.dispose()


def sql(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def insert_legacy(url: str, count: int) -> None:
    """*count* entries as a pre-0003 controller wrote them (no mac column yet)."""
    engine = create_engine(url)
    prev = ZERO_HASH
    try:
        with engine.begin() as conn:
            for seq in range(1, count + 1):
                at = T0 + timedelta(seconds=seq)
                row = {"seq": seq, "zone": ZONE, "process_id": None, "kind": "note",
                       "from_state": None, "to_state": f"s{seq}", "actor": "cli:alice",
                       "reason": f"old {seq}"}
                digest = entry_hash(prev, {**row, "at": rfc3339(at), "evidence": {"n": seq}})
                conn.execute(insert(HISTORY).values(
                    **row, at=at, evidence=canonical_json({"n": seq}), prev_hash=prev,
                    hash=digest))
                prev = digest
    finally:
        engine.dispose()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def keyed(url: str) -> Iterator[StateStore]:
    with StateStore(filled(url), history_key=KEY) as store:
        yield store


# -- the reproduced attack -------------------------------------------------------------


def test_rewrite_passes_the_plain_chain_but_not_the_macs(url: str) -> None:
    filled(url)
    attack(url)
    with StateStore(url) as plain:  # what `audit verify` saw before: no key, no MAC check
        assert plain.verify_chain().ok
    with StateStore(url, history_key=KEY) as store:
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq, report.checked) == (False, 3, 3)
    assert report.problem is not None and "MAC does not verify" in report.problem


def test_stripping_macs_does_not_help_the_attacker(url: str) -> None:
    filled(url)
    attack(url)
    sql(url, "UPDATE history SET mac = NULL WHERE seq >= 3")
    with StateStore(url, history_key=KEY) as store:
        report = store.verify_chain()
        assert (report.ok, report.first_bad_seq) == (False, 3)
        assert "has no MAC although entry 1 before it is authenticated" in str(report.problem)
        sql(url, "UPDATE history SET mac = NULL")
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq) == (False, None)
    assert "none of the 4 entries is authenticated" in str(report.problem)
    with pytest.raises(AuditError, match=r"^history: none of the 4"):
        report.raise_if_bad()


def test_a_history_written_with_another_key_does_not_verify(url: str) -> None:
    filled(url, key=OTHER_KEY)
    with StateStore(url, history_key=KEY) as store:
        report = store.verify_chain()
        assert (report.ok, report.first_bad_seq) == (False, 1)
        assert KEY.key_id in str(report.problem)
        # ...and this controller refuses to extend it rather than fork the authentication
        with pytest.raises(StateError, match="does not verify with the configured"):
            note(store, 6)


def test_a_controller_without_the_key_may_not_extend_an_authenticated_history(
        url: str) -> None:
    filled(url)
    with StateStore(url) as keyless, pytest.raises(StateError, match="has no \\[history\\]"):
        note(keyless, 6)
    with StateStore(url, history_key=KEY) as store:
        assert store.verify_chain().ok


def test_new_entries_carry_a_mac_of_their_hash(keyed: StateStore) -> None:
    entries = keyed.history()
    assert [e.mac for e in entries] == [KEY.entry_mac(e.hash) for e in entries]
    report = keyed.verify_chain()
    assert (report.ok, report.authenticated, report.unauthenticated) == (True, 5, 0)
    assert report.head_hash == entries[-1].hash


def test_process_transitions_are_authenticated(url: str) -> None:
    with StateStore.open(url, history_key=KEY) as store:
        process = store.start_process(ZONE, "sync", signer=None, actor="scheduler",
                                      reason="drift", state="plan", now=T0)
        store.transition(process.id, "act", actor="scheduler", reason="go", now=T0)
        entries = store.history(ZONE)
        assert len(entries) == 2
        assert [e.mac for e in entries] == [KEY.entry_mac(e.hash) for e in entries]


def test_commands_write_with_the_configured_key(tmp_path: Path) -> None:
    """The CLI's runtime store (every command that moves a process) carries the key."""
    from orchestrator.cli_common import run_with as _run
    from orchestrator.engine.lease import zone_lease
    from orchestrator.runtime import LEASE_SECONDS, Runtime

    path = write_config(tmp_path, f'[history]\nkey_file = "{key_file(tmp_path)}"\n')
    config = load_config(path)
    key = history_key(config)
    assert key is not None

    async def body(rt: Runtime) -> list[HistoryInfo]:
        async with zone_lease(rt.store, ZONE, LEASE_SECONDS):  # the zone's writes are fenced
            note(rt.store, 1)
        return rt.store.history()

    (entry,) = _run(config, body)
    assert entry.mac == key.entry_mac(entry.hash)


# -- checkpoints -----------------------------------------------------------------------


def test_truncation_is_detected_against_an_exported_checkpoint(keyed: StateStore,
                                                               url: str) -> None:
    exported = json.dumps(keyed.checkpoint(T0).as_json())
    checkpoint = parse_checkpoint(exported, "cp.json")
    authenticate(checkpoint, KEY, "cp.json")
    assert (checkpoint.entries, checkpoint.time) == (5, rfc3339(T0))
    note(keyed, 6)  # growth after the checkpoint is fine
    assert keyed.verify_chain(checkpoint).ok
    sql(url, "DELETE FROM history WHERE seq >= 5")
    assert keyed.verify_chain().ok  # the shortened chain is valid on its own...
    report = keyed.verify_chain(checkpoint)  # ...but not against the checkpoint
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "has 4 entries but the checkpoint" in str(report.problem)
    assert "entry 5 were deleted (truncated)" in str(report.problem)


def test_a_different_history_under_the_same_key_is_a_rewrite(keyed: StateStore,
                                                             tmp_path: Path) -> None:
    checkpoint = keyed.checkpoint(T0)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with StateStore.open(other, history_key=KEY) as store:
        for n in range(1, 7):
            note(store, n, "other.test.")
        assert store.verify_chain().ok
        report = store.verify_chain(checkpoint)
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "hash differs from the checkpoint" in str(report.problem)


def test_checkpoint_with_bad_mac_or_from_another_key_is_refused(keyed: StateStore) -> None:
    data = keyed.checkpoint(T0).as_json()
    forged = parse_checkpoint(json.dumps({**data, "entries": 3}), "forged.json")
    with pytest.raises(AuditError, match=r"forged\.json: its MAC does not verify"):
        authenticate(forged, KEY, "forged.json")
    with pytest.raises(AuditError, match="made with another \\[history\\] key"):
        authenticate(parse_checkpoint(json.dumps(data), "cp"), OTHER_KEY, "cp")
    for bad in ("not json", "[]", json.dumps({**data, "format": "x"}),
                json.dumps({**data, "entries": -1}), json.dumps({**data, "extra": 1})):
        with pytest.raises(UsageError, match=r"^checkpoint f: "):
            parse_checkpoint(bad, "f")


def test_checkpoint_of_a_broken_history_is_refused(keyed: StateStore, url: str) -> None:
    attack(url)
    with pytest.raises(AuditError, match="history entry seq 3: MAC does not verify"):
        keyed.checkpoint(T0)


# -- histories from before the key: migration 0003 and sealing --------------------------


def test_migration_keeps_old_entries_and_seal_authenticates_them(url: str) -> None:
    with StateStore(url) as old:
        old.migrate("0002")
    insert_legacy(url, 3)
    with StateStore.open(url, history_key=KEY) as store:  # migrates to 0003
        assert [e.mac for e in store.history()] == [None, None, None]
        report = store.verify_chain()
        assert (report.ok, report.checked, report.first_bad_seq) == (False, 3, None)
        note(store, 4)
        report = store.verify_chain()
        assert report.ok
        assert (report.unauthenticated, report.first_authenticated) == (3, 4)
        result = store.seal_history(actor="cli:alice", reason="checked", now=T0)
        assert result is not None and (result.sealed, result.through) == (3, 3)
        assert result.entry.kind == "history-seal" and result.entry.seq == 5
        assert result.entry.evidence["sealed_entries"] == 3
        report = store.verify_chain()
        assert (report.ok, report.checked, report.unauthenticated) == (True, 5, 0)
        assert store.seal_history(actor="cli:alice", reason="again") is None
    sql(url, "UPDATE history SET mac = NULL WHERE seq <= 2")  # undo the seal
    with StateStore(url, history_key=KEY) as store:
        report = store.verify_chain()
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert "the seal at entry 5 authenticated" in str(report.problem)


def test_seal_clears_a_history_with_no_mac_yet_but_not_a_broken_one(url: str) -> None:
    filled(url, key=None)
    with StateStore(url, history_key=KEY) as store:
        assert not store.verify_chain().ok
        result = store.seal_history(actor="cli:alice", reason="checked", now=T0)
        assert result is not None and result.sealed == 5
        assert store.verify_chain().ok
    other = url.replace("state.db", "broken.db")
    filled(other, key=None)
    sql(other, "UPDATE history SET reason = 'x' WHERE seq = 2")
    with StateStore(other, history_key=KEY) as store:
        with pytest.raises(AuditError, match="history entry seq 2"):
            store.seal_history(actor="cli:alice", reason="checked")
        assert all(e.mac is None for e in store.history())


# -- [history] configuration -------------------------------------------------------------


def write_config(tmp_path: Path, history: str) -> Path:
    path = tmp_path / "multisigner.toml"
    path.write_text(f'[state]\nurl = "sqlite:///{tmp_path / "state.db"}"\n{history}')
    return path


def key_file(tmp_path: Path, secret: str = "s" * 40, mode: int = 0o600) -> Path:
    path = tmp_path / "history.key"
    path.write_text(secret + "\n")
    os.chmod(path, mode)
    return path


def test_key_from_file_and_from_environment_are_the_same_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_file = write_config(tmp_path, f'[history]\nkey_file = "{key_file(tmp_path)}"\n')
    monkeypatch.setenv("MS_HISTORY_KEY", "s" * 40)
    (tmp_path / "env").mkdir()
    from_env = write_config(tmp_path / "env", '[history]\nkey = "${MS_HISTORY_KEY}"\n')
    first, second = (history_key(load_config(p), p) for p in (from_file, from_env))
    assert first is not None and second is not None and first.key_id == second.key_id
    assert "s" * 32 not in repr(first) and "s" * 32 not in repr(load_config(from_env))
    no_history = write_config(tmp_path, "")
    assert history_key(load_config(no_history)) is None


@pytest.mark.parametrize(("history", "expected"), [
    ("[history]\n", "history: set exactly one of key"),
    ('[history]\nkey = "x"\nkey_file = "/k"\n', "history: set exactly one of key"),
    ('[history]\nkey = "${MS_HISTORY_KEY}"\n',
     "history.key: environment variable MS_HISTORY_KEY is not set"),
    ('[history]\nkey = "short-secret"\n', "history.key: the key is 12 bytes; use at least"),
    ('[history]\nkey_file = "KEYFILE"\nmode = 1\n', "history.mode: unknown key"),
])
def test_bad_history_config_exits_2_naming_the_key(
        tmp_path: Path, history: str, expected: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MS_HISTORY_KEY", raising=False)
    config = write_config(tmp_path, history.replace("KEYFILE", str(key_file(tmp_path))))
    assert main(["--config", str(config), "audit", "verify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("configuration error: ") and expected in err, err
    assert "short-secret" not in err


@pytest.mark.parametrize(("mode", "exists", "expected"), [
    (0o640, True, "is accessible by group or others (mode 0640); whoever can read it"),
    (0o604, True, "(mode 0604)"),
    (0o600, False, "does not exist; create it"),
])
def test_key_file_must_exist_and_be_private(tmp_path: Path, mode: int, exists: bool,
                                            expected: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = key_file(tmp_path, mode=mode)
    if not exists:
        path.unlink()
    config = write_config(tmp_path, f'[history]\nkey_file = "{path}"\n')
    assert main(["--config", str(config), "audit", "verify"]) == 2
    err = capsys.readouterr().err
    assert f"{config}: history.key_file: {path} " in err and expected in err, err
    with pytest.raises(ConfigError, match=r"history\.key_file"):
        history_key(load_config(config), config)


# -- the audit commands ------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    rc = main(["--config", str(config), "audit", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_verify_without_a_key_keeps_its_output_and_warns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "")
    filled(f"sqlite:///{tmp_path / 'state.db'}", key=None)
    rc, out, err = run(capsys, config, "verify")
    assert (rc, out) == (0, "history chain OK: 5 entries verified\n")
    assert "without a [history] key the history is only tamper-evident against " \
           "accidental change, not against an attacker with write access" in err
    rc, out, _ = run(capsys, config, "verify", "--json")
    data = json.loads(out)
    assert (data["ok"], data["checked"], data["authenticated"]) == (True, 5, False)
    assert "not against an attacker" in data["note"]
    rc, _, err = run(capsys, config, "checkpoint")
    assert rc == 2 and "audit checkpoint needs a [history] key" in err
    (tmp_path / "cp.json").write_text("{}")
    rc, _, err = run(capsys, config, "verify", "--checkpoint", str(tmp_path / "cp.json"))
    assert rc == 2 and "format is None" in err
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}", history_key=KEY) as store:
        store.seal_history(actor="cli:alice", reason="checked")
    rc, out, err = run(capsys, config, "verify")
    assert (rc, out) == (0, "history chain OK: 6 entries verified\n")
    assert "6 entries carry a MAC that was not checked" in err


def test_cli_checkpoint_then_attack_then_verify(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f'[history]\nkey_file = "{key_file(tmp_path)}"\n')
    key = history_key(load_config(config))
    url = filled(f"sqlite:///{tmp_path / 'state.db'}", key=key)
    cp = tmp_path / "cp.json"
    rc, out, _ = run(capsys, config, "checkpoint", "--out", str(cp), "--json")
    assert rc == 0 and json.loads(out)["checkpoint"] == json.loads(cp.read_text())
    assert json.loads(cp.read_text())["entries"] == 5
    rc, out, err = run(capsys, config, "verify", "--checkpoint", str(cp))
    assert rc == 0 and err == "", err
    assert out.startswith("history chain OK: 5 entries verified, MACs checked")
    assert "all 5 entries it saw are present and unchanged" in out

    sql(url, "DELETE FROM history WHERE seq = 5")
    rc, out, _ = run(capsys, config, "verify")
    assert rc == 0  # a truncated tail is invisible without the checkpoint...
    rc, out, _ = run(capsys, config, "verify", "--checkpoint", str(cp), "--json")
    data = json.loads(out)  # ...and caught with it
    assert (rc, data["ok"], data["first_bad_seq"]) == (1, False, 5)
    assert "truncated" in data["problem"] and data["checkpoint"]["entries"] == 5

    attack(url)
    rc, out, _ = run(capsys, config, "verify")
    assert rc == 1 and out.startswith("history chain BROKEN at entry 3: MAC does not verify")

    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**json.loads(cp.read_text()), "entries": 3}))
    rc, _, err = run(capsys, config, "verify", "--checkpoint", str(forged))
    assert rc == 1 and "its MAC does not verify" in err


def test_cli_seal_records_itself_in_the_history(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f'[history]\nkey_file = "{key_file(tmp_path)}"\n')
    filled(f"sqlite:///{tmp_path / 'state.db'}", count=2, key=None)
    rc, out, _ = run(capsys, config, "verify")
    assert rc == 1 and out.startswith("history chain NOT AUTHENTICATED: none of the 2")
    rc, out, _ = run(capsys, config, "seal", "--reason", "checked by alice")
    assert (rc, out) == (0, "sealed 2 entries (seq 1..2); recorded as history entry 3\n")
    rc, out, _ = run(capsys, config, "verify", "--json")
    data = json.loads(out)
    assert (rc, data["checked"], data["unauthenticated_entries"]) == (0, 3, 0)
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store:
        seal = store.history()[-1]
    assert (seal.kind, seal.reason) == ("history-seal", "checked by alice")
    rc, out, _ = run(capsys, config, "seal", "--json")
    assert (rc, json.loads(out)["sealed"]) == (0, 0)
    rc, _, err = run(capsys, config, "verify", "--out", "x")
    assert rc == 2 and "--out is an option of 'audit checkpoint'" in err
