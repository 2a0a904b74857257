"""Aborting signer processes (``multisigner rollover ZONE --abort``; ``signer`` has no
--abort of its own): an add aborted in import-keys or in add-ds returns the zone to its two
signers -- p2's keys gone from p0 and p1, the parent's DS back to theirs -- under the
watcher and the Unbound probe; an abort once the delegation is changing (add-ns onwards,
and any step of a remove) is refused and the process finishes exactly as without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rollover.rollkit import (
    FAST,
    LAB,
    cli,
    entries_of,
    latest,
    ok,
    processes,
    running_lab,
    step_until,
    sync_zones,
    verify_ok,
    write_config,
)

from multisigner_lab import Lab
from signers.signerkit import (
    Observed,
    aborted_add_states,
    add_states,
    advance_until,
    apex,
    audit_ok,
    check_chain,
    check_holds,
    ksk_ds,
    lab_ttls,
    ns_of,
    own_keys,
    refused,
    remove_states,
    signers,
)

pytestmark = LAB

KEYS = "abkeys.test."  # aborted in import-keys, then added again
DS = "abds.test."  # aborted in add-ds, once the parent's DS names p2's KSK
LATE = "ablate.test."  # abort refused in every step from add-ns on, and in every remove step
# where the abort is tried (every step from add-ns on; every step of a remove)
ADD_STOPS = ("add-ns:act", "add-ns:observe", "parent-ns:act", "parent-ns:observe",
             "cleanup:act", "cleanup:observe")
REMOVE_STOPS = ("drain:act", "drain:hold", "remove-ds:act", "remove-ds:hold",
                "remove-keys:act", "remove-keys:observe")
REFUSALS: dict[str, str] = {}  # state -> the refusal's message (for the wording check)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "sig-abort", providers=3, zones=[KEYS, DS, LATE],
                     delegated=["p0", "p1"]) as running:
        sync_zones(running, [KEYS, DS, LATE])
        yield running


def config_for(lab: Lab, zone: str) -> Path:
    return write_config(lab, f"{zone}toml", zones=[zone], policy=FAST)


def abort(config: Path, zone: str) -> str:
    res = ok(cli(config, "rollover", zone, "--abort"))
    assert f"aborting signer-add {latest(config, zone)['id']}: abort:" in res.out, res.out
    return res.out


def check_back_to_two(lab: Lab, config: Path, zone: str) -> None:
    """p0 and p1 are the signers, as before the add: p2's keys are nowhere but at p2."""
    members = ["p0", "p1"]
    assert signers(config, zone) == members
    assert lab.parent_ns(zone) == ns_of(lab, members)
    assert lab.parent_ds(zone) == ksk_ds(lab, zone, members)
    keys = own_keys(lab, "p0", zone) | own_keys(lab, "p1", zone)
    for name, a in apex(lab, zone, members).items():
        assert a.keys == keys, f"{name} serves {sorted(a.keys - keys)} (p2's keys?)"
        assert not a.keys & own_keys(lab, "p2", zone), name
        assert a.cds == set(ksk_ds(lab, zone, members)), name
        assert a.ns == set(ns_of(lab, members)) and a.csync == (), name
    verify_ok(config, zone)


def test_abort_an_add_in_import_keys_then_add_again(lab: Lab) -> None:
    config = config_for(lab, KEYS)
    with Observed(lab, KEYS) as obs:
        res = ok(cli(config, "signer", "add", KEYS, "p2"))
        proc = latest(config, KEYS, "signer-add")
        reached = proc["state"]  # import-keys:hold, unless a nameserver was slow
        assert reached.startswith("import-keys:"), res.out
        if reached == "import-keys:hold":
            p0_served = apex(lab, KEYS, ["p0"])["p0"].keys
            assert own_keys(lab, "p2", KEYS) <= p0_served, "p2's keys were not imported"
        abort(config, KEYS)
        step_until(config, KEYS, lambda s: s == "aborted")
        check_back_to_two(lab, config, KEYS)
        # no running process any more: nothing to abort
        refused(cli(config, "rollover", KEYS, "--abort"), "no running process", code=2)
        # p2 keeps the others' keys it imported; a new join starts from there
        res = ok(cli(config, "signer", "add", KEYS, "p2", "--wait"))
        assert "signer-add done" in res.out, res.out
        verify_ok(config, KEYS)
    obs.assert_clean()
    entries = entries_of(config, KEYS, proc["id"])
    check_chain(entries, aborted_add_states("import-keys", reached))
    assert next(p for p in processes(config, KEYS) if p["id"] == proc["id"])["status"] == (
        "aborted")
    again = latest(config, KEYS, "signer-add")
    assert again["id"] != proc["id"] and again["status"] == "done"
    check_chain(entries_of(config, KEYS, again["id"]), add_states())
    assert signers(config, KEYS) == ["p0", "p1", "p2"]
    assert lab.parent_ns(KEYS) == ns_of(lab, ["p0", "p1", "p2"])
    assert lab.parent_ds(KEYS) == ksk_ds(lab, KEYS, ["p0", "p1", "p2"])
    audit_ok(config)


def test_abort_an_add_once_the_parent_ds_names_the_joining_ksk(lab: Lab) -> None:
    config = config_for(lab, DS)
    p2_ds = ksk_ds(lab, DS, ["p2"])
    with Observed(lab, DS) as obs:
        ok(cli(config, "signer", "add", DS, "p2"))
        proc = latest(config, DS, "signer-add")
        step_until(config, DS, lambda s: s == "add-ds:hold")
        assert set(p2_ds) <= set(lab.parent_ds(DS)), "the parent's DS does not name p2 yet"
        out = abort(config, DS)
        assert "abort:revert-ds:act" in out, out
        # already aborting: a second abort is refused
        refused(cli(config, "rollover", DS, "--abort"), "already aborting")
        step_until(config, DS, lambda s: s == "aborted")
        assert not set(p2_ds) & set(lab.parent_ds(DS))
        check_back_to_two(lab, config, DS)
    obs.assert_clean()
    assert latest(config, DS)["status"] == "aborted"
    entries = entries_of(config, DS, proc["id"])
    check_chain(entries, aborted_add_states("add-ds", "add-ds:hold"))
    assert check_holds(entries, lab_ttls(lab)) == ["import-keys", "add-ds", "revert-ds"]
    audit_ok(config)


def _refuse_abort(config: Path, zone: str) -> None:
    before = latest(config, zone)
    res = cli(config, "rollover", zone, "--abort")
    step = before["state"].split(":")[0]
    refused(res, "cannot abort", f"'{step}'")
    REFUSALS[before["state"]] = res.err
    after = latest(config, zone)
    assert (after["id"], after["state"], after["status"]) == (
        before["id"], before["state"], "running"), after


def test_abort_refused_once_the_delegation_changes(lab: Lab) -> None:
    config = config_for(lab, LATE)
    with Observed(lab, LATE) as obs:
        ok(cli(config, "signer", "add", LATE, "p2"))
        add = latest(config, LATE, "signer-add")
        assert latest(config, LATE)["state"].startswith("import-keys:")
        for state in ADD_STOPS:
            advance_until(config, LATE, lambda s, state=state: s == state)
            _refuse_abort(config, LATE)
        step_until(config, LATE, lambda s: s == "done")
        assert signers(config, LATE) == ["p0", "p1", "p2"]

        ok(cli(config, "signer", "remove", LATE, "p0"))
        remove = latest(config, LATE, "signer-remove")
        _refuse_abort(config, LATE)  # wherever 'signer remove' stopped
        order = remove_states()
        for state in REMOVE_STOPS:
            if order.index(state) <= order.index(latest(config, LATE)["state"]):
                continue  # 'signer remove' went past it by itself (a quick parent)
            advance_until(config, LATE, lambda s, state=state: s == state)
            _refuse_abort(config, LATE)
        step_until(config, LATE, lambda s: s == "done")
        verify_ok(config, LATE)
    obs.assert_clean()
    # the refused aborts left no trace: exactly the runbooks' sequences
    check_chain(entries_of(config, LATE, add["id"]), add_states())
    check_chain(entries_of(config, LATE, remove["id"]), remove_states())
    assert signers(config, LATE) == ["p1", "p2"]
    assert lab.parent_ns(LATE) == ns_of(lab, ["p1", "p2"])
    assert lab.parent_ds(LATE) == ksk_ds(lab, LATE, ["p1", "p2"])
    audit_ok(config)
    print("\n".join(f"{s}: {m.strip()}" for s, m in REFUSALS.items()))


def test_abort_refusal_of_a_signer_process_explains_the_way_back() -> None:
    if not REFUSALS:
        pytest.skip("no refusal collected (test_abort_refused_once_the_delegation_changes)")
    for state, message in REFUSALS.items():
        assert "predecessor" not in message, f"{state}: {message}"
        assert "opposite signer process" in message, f"{state}: {message}"
