"""Faults during a rollover: a provider API that refuses, fails with 5xx or times out; a
nameserver that silently misses a change (and a provider API that loses one); a parent
that never picks up the new DS. The process never advances on what it could not
observe, says STALLED once, changes nothing on a failed step, and can be aborted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from multisigner_lab import Lab
from multisigner_lab.powerdns import set_rrset
from rollover.fakes import BlackholeApi, FailingApi, StaleNameserver, closed_port
from rollover.rollkit import (
    FAST,
    LAB,
    Observed,
    abort_states,
    bug_unless,
    cli,
    entries_of,
    history,
    latest,
    main_states,
    ok,
    processes,
    provider_entry,
    running_lab,
    served,
    start_parent_automation,
    step_until,
    stop_parent_automation,
    sync_zones,
    to_states,
    verify_ok,
    when,
    with_api_url,
    write_config,
)

pytestmark = LAB

API, STALE, PARENT, STALLED = "fapi.test.", "fstale.test.", "fparent.test.", "fstall.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "faults", providers=2,
                     zones=[API, STALE, PARENT, STALLED]) as running:
        sync_zones(running, [API, STALE, PARENT, STALLED])
        yield running


@pytest.fixture(scope="module")
def fast(lab: Lab) -> Path:
    return write_config(lab, "fast.toml", policy=FAST)


def _sleep_until(iso: str | None) -> None:
    if iso:
        time.sleep(max(0.0, (when(iso) - datetime.now(UTC)).total_seconds()) + 0.05)


def test_provider_api_failures_leave_the_process_where_it_is(lab: Lab, fast: Path) -> None:
    closed = with_api_url(lab, "p1-closed.toml", "p1", f"http://127.0.0.1:{closed_port()}")
    with FailingApi(503) as failing, BlackholeApi() as hole, Observed(lab, API) as obs:
        broken = with_api_url(lab, "p1-503.toml", "p1", failing.url)
        slow = with_api_url(lab, "p1-timeout.toml", "p1", hole.url, timeout="1s")

        res = cli(closed, "rollover", API, "--key", "zsk", "--signer", "p0")
        assert res.rc == 1, res
        assert "provider 'p1'" in res.err and "cannot connect" in res.err, res.err
        assert [p["kind"] for p in processes(fast, API)] == ["sync"], "a refused start " \
            "must not create a process"

        res = ok(cli(fast, "rollover", API, "--key", "zsk", "--signer", "p0"))
        pid = latest(fast, API)["id"]
        answer = ok(cli(fast, "step", API, "--json")).json()
        assert answer["state"] == "publish:hold"
        _sleep_until(answer["next_check_at"])
        keys = lab.keys("p0", API)  # the successor is published, not signing
        for i, (config, words) in enumerate(((broken, "HTTP 503"), (closed, "cannot connect"),
                                             (slow, "timed out"))):
            n = len(history(fast, API))
            res = cli(config, "step", API)
            assert res.rc == 1, res
            assert "provider 'p1'" in res.err and words in res.err, res.err
            assert "gave up after 4 attempts" in res.err
            now = latest(fast, API)
            assert (now["id"], now["state"], now["status"]) == (pid, "activate:act", "running")
            # the first failing step only ended the (expired) hold; none acted on keys
            assert len(history(fast, API)) == n + (1 if i == 0 else 0)
            assert lab.keys("p0", API) == keys
        assert failing.requests >= 4  # retried before giving up
        step_until(fast, API, lambda s: s == "done")
        verify_ok(fast, API)
    obs.assert_clean()
    assert to_states(entries_of(fast, API, pid)) == main_states("zsk")


def _stalls(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["reason"].startswith("STALLED")]


def _step_for(config: Path, zone: str, seconds: float) -> tuple[list[dict[str, Any]], str]:
    """``step --json`` every ~0.3 s for ``seconds``: the answers, and all of stderr."""
    out, err = [], ""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        res = ok(cli(config, "step", zone, "--json"))
        out.append(res.json())
        err += res.err
        time.sleep(0.3)
    return out, err


def _status_waiting_for(config: Path, zone: str) -> str:
    process = ok(cli(config, "status", zone, "--json")).json()["zones"][0]["process"]
    return str(process["waiting_for"])


def test_a_nameserver_that_misses_the_change_stalls_the_process(lab: Lab) -> None:
    """PowerDNS (caches at 0) serves exactly what its API holds, so its own nameserver
    cannot lag; a secondary can. A DNS proxy in front of p1, listed as p1's second
    nameserver, replays p1's answers from before the rollover ("frozen")."""
    p1 = lab.server("p1")
    stale = StaleNameserver((p1.address, p1.dns_port)).start()
    try:
        def add_ns(data: dict[str, Any]) -> None:
            provider_entry(data, "p1")["nameservers"].append(stale.nameserver)

        config = write_config(lab, "stale.toml", mutate=add_ns,
                              policy={**FAST, "propagation_timeout": "3s"})
        ok(cli(config, "verify", STALE))  # the proxy remembers the product's questions
        with Observed(lab, STALE, extra={"p1": [stale.endpoint]}) as obs:
            stale.freeze()
            before = lab.keys("p0", STALE)
            res = ok(cli(config, "rollover", STALE, "--key", "zsk", "--signer", "p0"))
            assert "publish:observe: waiting for target DNSKEY" in res.out, res.out
            pid = latest(config, STALE)["id"]
            successor = next(k for k in lab.keys("p0", STALE)
                             if k.id not in {b.id for b in before})
            answers, err = _step_for(config, STALE, 4.5)
            assert {a["state"] for a in answers} == {"publish:observe"}
            assert all(stale.nameserver in a["waiting_for"] for a in answers), answers[-1]
            stalls = _stalls(entries_of(config, STALE, pid))
            assert len(stalls) == 1, stalls  # loudly, once
            assert stalls[0]["from_state"] == stalls[0]["to_state"] == "publish:observe"
            assert stale.nameserver in stalls[0]["reason"]
            assert err.count("STALLED") == 1 and stale.nameserver in err, err
            assert _status_waiting_for(config, STALE).startswith("STALLED: ")
            assert stale.served_stale > 0
            # never switched signing on the unobserved state
            assert not next(k for k in lab.keys("p0", STALE) if k.id == successor.id).active
            assert all(successor.key_tag not in a.soa_signers for a in served(lab, STALE))

            # p1's API now also loses the imported successor: the next step puts it back
            with lab.pdns_api("p1") as api:
                rrset = next(r for r in api.get(f"/zones/{STALE}").json()["rrsets"]
                             if r["type"] == "DNSKEY")
                kept = [r["content"] for r in rrset["records"]
                        if r["content"] != successor.dnskey]
                set_rrset(api, STALE, STALE, "DNSKEY", ttl=rrset["ttl"], contents=kept)
            res = ok(cli(config, "step", STALE))
            assert "re-applying 1 change(s)" in res.err, res.err
            assert all(successor.dnskey in a.keys for a in served(lab, STALE))
            assert latest(config, STALE)["state"] == "publish:observe"

            stale.thaw()
            step_until(config, STALE, lambda s: s == "done")
            verify_ok(config, STALE)
        obs.assert_clean()
        states = main_states("zsk")
        states.insert(states.index("publish:observe") + 1, "publish:observe")  # the STALLED
        assert to_states(entries_of(config, STALE, pid)) == states
    finally:
        stale.stop()


def test_a_parent_that_never_follows_stalls_swap_ds_until_abort(lab: Lab) -> None:
    config = write_config(lab, "slow-parent.toml", policy={**FAST, "parent_timeout": "3s"})
    stop_parent_automation(lab)  # the registry stops processing CDS changes
    try:
        before = lab.keys("p0", PARENT)
        old = next(k for k in before if k.flags == 257)
        ds_before = lab.parent_ds(PARENT)
        cds_before = {a.provider: a.cds for a in served(lab, PARENT)}
        with Observed(lab, PARENT) as obs:
            ok(cli(config, "rollover", PARENT, "--key", "ksk", "--signer", "p0"))
            pid = latest(config, PARENT)["id"]
            step_until(config, PARENT, lambda s: s == "swap-ds:observe")
            successor = next(k for k in lab.keys("p0", PARENT)
                             if k.id not in {b.id for b in before})
            answers, err = _step_for(config, PARENT, 4.5)
            assert {a["state"] for a in answers} == {"swap-ds:observe"}
            assert all(a["waiting_for"].removeprefix("STALLED: ").startswith("parent DS = ")
                       for a in answers)
            assert err.count("STALLED") == 1, err
            assert _status_waiting_for(config, PARENT).startswith("STALLED: parent DS")
            stalls = _stalls(entries_of(config, PARENT, pid))
            assert len(stalls) == 1 and "parent DS" in stalls[0]["reason"], stalls
            # nothing moved on: old KSK present and signing, parent DS as it was
            assert lab.parent_ds(PARENT) == ds_before
            assert {k.id for k in lab.keys("p0", PARENT) if k.active} >= {old.id}
            for a in served(lab, PARENT):
                assert old.dnskey in a.keys
                if a.provider == "p0":
                    assert old.key_tag in a.dnskey_signers
                assert any(c.startswith(f"{successor.key_tag} ") for c in a.cds)

            res = ok(cli(config, "rollover", PARENT, "--abort"))
            assert "aborting ksk-rollover" in res.out
            step_until(config, PARENT, lambda s: s == "aborted")
            verify_ok(config, PARENT)
        obs.assert_clean()
        main = to_states(entries_of(config, PARENT, pid))
        want = abort_states("ksk", "swap-ds", "swap-ds:observe")
        want.insert(want.index("swap-ds:observe") + 1, "swap-ds:observe")  # the STALLED
        assert main == want
        assert {(k.id, k.active) for k in lab.keys("p0", PARENT)} == {
            (k.id, k.active) for k in before}
        assert {a.provider: a.cds for a in served(lab, PARENT)} == cds_before
        assert lab.parent_ds(PARENT) == ds_before
        assert json.loads(latest(config, PARENT)["data"])["path"] == "abort"
    finally:
        start_parent_automation(lab)  # back to a working registry for anything after this


def test_step_keeps_saying_stalled(lab: Lab) -> None:
    config = write_config(lab, "stalled-step.toml", policy={**FAST, "parent_timeout": "1s"})
    stop_parent_automation(lab)
    try:
        ok(cli(config, "rollover", STALLED, "--key", "ksk", "--signer", "p0"))
        step_until(config, STALLED, lambda s: s == "swap-ds:observe")
        answers, err = _step_for(config, STALLED, 2.5)
        assert "STALLED" in err and _status_waiting_for(config, STALLED).startswith("STALLED")
        last = answers[-1]
        text = ok(cli(config, "step", STALLED)).out
    finally:
        ok(cli(config, "rollover", STALLED, "--abort", "--wait"))
        start_parent_automation(lab)
    bug_unless(last["waiting_for"].startswith("STALLED: "), f"step --json: {last}")
    bug_unless("STALLED" in text, f"step: {text}")
