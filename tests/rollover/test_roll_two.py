"""Rollovers with two providers (p0 with KSK+ZSK, p1 with a CSK): ZSK, KSK and CSK run
to the end with ``--wait``; a ZSK rollover driven by hand with ``step``; and the refusals
that must change nothing."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from multisigner_lab import Lab
from rollover.rollkit import (
    FAST,
    LAB,
    Observed,
    api_snapshot,
    bug_unless,
    cli,
    entries_of,
    history,
    latest,
    main_states,
    ok,
    processes,
    roll_and_check,
    running_lab,
    sync_zones,
    to_states,
    when,
    write_config,
)
from state.store import StateStore

pytestmark = LAB

ZSK, KSK, CSK, STEP, REFUSE, FRESH, LEASED = (
    "zsk2.test.", "ksk2.test.", "csk2.test.", "step2.test.", "refuse2.test.", "fresh2.test.",
    "leased2.test.")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # ds_ttl differs from the other TTLs so a hold on the wrong term shows
    with running_lab(tmp_path_factory, "two", providers=2, csk={"p1"}, ds_ttl=3,
                     zones=[ZSK, KSK, CSK, STEP, REFUSE, FRESH, LEASED]) as running:
        sync_zones(running, [ZSK, KSK, CSK, STEP, REFUSE, LEASED])  # FRESH is never synced
        yield running


@pytest.fixture(scope="module")
def fast(lab: Lab) -> Path:
    return write_config(lab, "fast.toml", policy=FAST)


def test_zsk_rollover_two_providers(lab: Lab, fast: Path) -> None:
    roll_and_check(lab, fast, ZSK, "zsk", "p0")


def test_ksk_rollover_two_providers(lab: Lab, fast: Path) -> None:
    roll_and_check(lab, fast, KSK, "ksk", "p0")


def test_csk_rollover(lab: Lab, fast: Path) -> None:
    roll_and_check(lab, fast, CSK, "csk", "p1")


def test_manual_stepping_drives_a_zsk_rollover(lab: Lab, fast: Path) -> None:
    with Observed(lab, STEP) as obs:
        res = ok(cli(fast, "rollover", STEP, "--key", "zsk", "--signer", "p0"))
        assert "publish:hold: waiting for hold TTLkey until" in res.out, res.out
        assert f"continue with 'multisigner step {STEP}'" in res.out
        proc = latest(fast, STEP, "zsk-rollover")
        holds_seen: list[str] = []
        calls = 0
        while True:
            answer: dict[str, Any] = ok(cli(fast, "step", STEP, "--json")).json()
            calls += 1
            assert answer["process"] == proc["id"] and answer["kind"] == "zsk-rollover"
            if answer["finished"]:
                break
            assert calls < 40, answer
            state = answer["state"]
            if state.endswith(":hold") and answer["next_check_at"] is not None:
                hold = [e for e in entries_of(fast, STEP, proc["id"])
                        if e["to_state"] == state][-1]
                deadline = when(hold["evidence"]["deadline"])
                term = {"publish:hold": "TTLkey", "activate:hold": "TTLsig"}[state]
                assert answer["waiting_for"].startswith(f"hold {term} until "), answer
                assert when(answer["next_check_at"]) == deadline
                if deadline > datetime.now(UTC):
                    holds_seen.append(state)
                    # Before the deadline a step changes nothing and says so.
                    n = len(history(fast, STEP))
                    text = ok(cli(fast, "step", STEP)).out
                    assert f"in {state}: waiting for hold {term} until" in text, text
                    assert len(history(fast, STEP)) == n
                    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.05)
            else:
                time.sleep(0.2)
    obs.assert_clean()
    assert answer["state"] == "done" and answer["finished"] is True
    assert "activate:hold" in holds_seen
    assert to_states(entries_of(fast, STEP, proc["id"])) == main_states("zsk")
    none = ok(cli(fast, "step", STEP, "--json")).json()
    assert none == {"zone": STEP, "process": None}


# --------------------------------------------------------------------------- refusals


def _unchanged(lab: Lab, config: Path, zone: str) -> tuple[Any, int, list[Any]]:
    return (api_snapshot(lab, zone), len(history(config, zone)),
            [(p["id"], p["state"], p["status"]) for p in processes(config, zone)])


def test_refuses_a_second_rollover_mid_process(lab: Lab, fast: Path) -> None:
    ok(cli(fast, "rollover", REFUSE, "--key", "zsk", "--signer", "p0"))
    running = latest(fast, REFUSE)
    assert running["status"] == "running" and running["state"] == "publish:hold"
    before = _unchanged(lab, fast, REFUSE)
    for args in (("--key", "zsk", "--signer", "p0"), ("--key", "ksk", "--signer", "p0"),
                 ("--key", "csk", "--signer", "p1")):
        res = cli(fast, "rollover", REFUSE, *args)
        assert res.rc == 1, res
        assert f"already has a running zsk-rollover process {running['id']}" in res.err
        assert "--abort" in res.err and "multisigner step" in res.err
    assert _unchanged(lab, fast, REFUSE) == before
    # leave the zone clean: abort (publish: the successor never signed) and finish
    res = ok(cli(fast, "rollover", REFUSE, "--abort", "--wait"))
    assert "zsk-rollover aborted" in res.out
    assert latest(fast, REFUSE)["status"] == "aborted"


def test_refuses_a_zone_not_in_sync(lab: Lab) -> None:
    before = _unchanged(lab, lab.config_path, FRESH)
    res = cli(lab.config_path, "rollover", FRESH, "--key", "zsk", "--signer", "p0")
    assert res.rc == 1, res
    assert "nothing was changed" in res.err
    assert "is not in sync" in res.err and f"multisigner sync {FRESH}" in res.err, res.err
    assert _unchanged(lab, lab.config_path, FRESH) == before
    assert processes(lab.config_path, FRESH) == []


def test_refuses_a_signer_not_in_the_zone(lab: Lab) -> None:
    before = _unchanged(lab, lab.config_path, REFUSE)
    res = cli(lab.config_path, "rollover", REFUSE, "--key", "zsk", "--signer", "p7")
    assert res.rc == 2, res
    assert "'p7' is not a signer of refuse2.test. (signers: p0, p1)" in res.err
    res = cli(lab.config_path, "rollover", REFUSE, "--key", "zsk")
    assert res.rc == 2 and "--signer NAME is required" in res.err, res
    assert _unchanged(lab, lab.config_path, REFUSE) == before


def test_refuses_the_wrong_key_type(lab: Lab) -> None:
    before = _unchanged(lab, lab.config_path, REFUSE)
    for key in ("zsk", "ksk"):
        res = cli(lab.config_path, "rollover", REFUSE, "--key", key, "--signer", "p1")
        assert res.rc == 1, res
        assert "p1 signs with a combined signing key (CSK); roll it with --key csk" in res.err
    res = cli(lab.config_path, "rollover", REFUSE, "--key", "csk", "--signer", "p0")
    assert res.rc == 1, res
    assert "p0 uses separate KSK and ZSK; use --key ksk or --key zsk" in res.err
    assert _unchanged(lab, lab.config_path, REFUSE) == before


def test_rollover_refused_by_a_held_lease_starts_nothing(lab: Lab, fast: Path) -> None:
    url = tomllib.loads(fast.read_text())["state"]["url"]
    store = StateStore.open(url)
    try:
        assert store.acquire_lease(LEASED, "elsewhere:1", 60, datetime.now(UTC))
        before = _unchanged(lab, fast, LEASED)
        res = cli(fast, "rollover", LEASED, "--key", "zsk", "--signer", "p0")
        after = _unchanged(lab, fast, LEASED)
        assert res.rc == 1 and "is being handled by elsewhere:1" in res.err, res
        store.release_lease(LEASED, "elsewhere:1")
    finally:
        store.close()
        if any(p["status"] == "running" for p in processes(fast, LEASED)):
            ok(cli(fast, "rollover", LEASED, "--abort", "--wait"))
    bug_unless(after == before, f"a refused rollover left {processes(fast, LEASED)[-1]}")
