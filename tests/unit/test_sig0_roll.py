"""The SIG(0) key roll's pure parts: its process data round-trips, and its two
observations say exactly what does not hold yet."""

from __future__ import annotations

import dns.name
import pytest
from pydantic import ValidationError

from core.observation import ZoneView
from orchestrator.decide.checks import CheckContext, unmet
from orchestrator.decide.process_data import ProcessData
from orchestrator.decide.sig0_roll import Sig0Observed, Sig0Roll
from runbooks import Runbook, runbook

OLD = "512 3 13 AAAA"
NEW = "512 3 13 BBBB"
ROLL = Sig0Roll("Kz.test.+013+00001", 1, "Kz.test.+013+00002", 2)


def ctx(step_id: str, observed: Sig0Observed | None) -> CheckContext:
    step = runbook("sig0-rollover", 2).step(step_id)
    return CheckContext(step, ZoneView(zone=dns.name.from_text("z.test."), servers=()), None, ROLL,
                        sig0=observed)


def test_the_roll_round_trips_through_process_data() -> None:
    data = ProcessData(payload=ROLL)
    assert ProcessData.from_json(data.as_json()).payload == ROLL
    started = ProcessData(payload=Sig0Roll("Kz.test.+013+00001", 1))
    assert ProcessData.from_json(started.as_json()).payload == started.payload


def test_one_runbook_serves_both_models() -> None:
    assert runbook("sig0-rollover", 1) is runbook("sig0-rollover", 2)
    assert [s.sig0 for s in runbook("sig0-rollover", 1).steps] == [
        "add-successor", "roll-at-parent", "retire-predecessor"]


def test_key_served_names_every_nameserver_not_serving_exactly_the_store() -> None:
    want = frozenset({OLD, NEW})
    served: dict[str, frozenset[str] | None] = {
        "ns1": want, "ns2": frozenset({OLD}), "ns3": None, "ns4": frozenset({OLD, NEW, "x"})}
    assert unmet(ctx("add-successor", Sig0Observed(want, served))) == [
        "SIG(0) KEY RRset at ns2, ns3, ns4"]
    assert unmet(ctx("add-successor", Sig0Observed(want, {"ns1": want}))) == []
    with pytest.raises(ValueError, match="key-served"):
        unmet(ctx("add-successor", None))


@pytest.mark.parametrize(("state", "holds"), [
    ("trusted", True), ("unknown", False), ("bootstrapping", False), (None, False)])
def test_parent_key_holds_only_once_the_parent_trusts_the_successor(
        state: str | None, holds: bool) -> None:
    missing = unmet(ctx("roll-at-parent", Sig0Observed(frozenset(), {}, state)))
    assert (missing == []) == holds
    if not holds:
        assert missing == [f"the parent trusting SIG(0) key 2 (it says: "
                           f"{state or 'nothing yet'})"]


def test_a_sig0_step_naming_key_states_or_holds_fails_to_load() -> None:
    book = {"kind": "probe", "title": "t", "summary": "s", "steps": [
        {"id": "one", "title": "one", "sig0": "add-successor", "observe": ["key-served"]}]}
    assert Runbook.model_validate(book).steps[0].sig0 == "add-successor"
    for extra in ({"keys": {"new": "published"}}, {"hold": ["TTLkey"]},
                  {"precondition": ["old-unused"]}):
        bad = {**book, "steps": [{**book["steps"][0], **extra}]}  # type: ignore[dict-item]
        with pytest.raises(ValidationError, match="a sig0 step names nothing but"):
            Runbook.model_validate(bad)
