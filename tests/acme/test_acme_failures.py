"""How a publish fails without leaving anything behind: a zone whose lease another
controller holds (waited for, then refused, nothing written), and a nameserver that does
not serve the value before --timeout (the value is removed again everywhere)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from acmekit import HOST, digest, everywhere
from integration.itkit import NEEDS_SERVERS, Run, api_snapshot, history

from multisigner_lab import Lab
from orchestrator.acme import propagation, rrsets
from orchestrator.decide.acme import ServedTxt
from state.store import StateStore

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]


def _store(lab: Lab) -> StateStore:
    import tomllib

    url = tomllib.loads(lab.config_path.read_text())["state"]["url"]
    return StateStore.open(url)


def test_zone_lease_held_elsewhere(lab: Lab, ms: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = lab.config_path
    name = f"_acme-challenge.busy.{HOST}"
    assert ms(cfg, "status", HOST).rc == 0  # the state DB exists
    store = _store(lab)
    try:
        assert store.acquire_lease(HOST, "other-host.example:4242", 120, datetime.now(UTC))
        monkeypatch.setattr(rrsets, "LEASE_WAIT", 1.0)
        before = api_snapshot(lab, HOST)
        res = ms(cfg, "acme", "publish", f"busy.{HOST}", digest("busy"))
        assert res.rc == 1, res
        assert f"zone {HOST} stayed locked by other-host.example:4242" in res.err, res.err
        assert api_snapshot(lab, HOST) == before
    finally:
        store.release_lease(HOST, "other-host.example:4242")
        store.close()
    res = ms(cfg, "acme", "publish", f"busy.{HOST}", digest("busy"), "--wait")
    assert res.rc == 0, res
    assert all(v == {digest("busy")} for v in everywhere(lab, HOST, name))
    assert ms(cfg, "acme", "cleanup", f"busy.{HOST}").rc == 0


def test_wait_timeout_removes_the_value_again(lab: Lab, ms: Run,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """p1's nameserver is made to look as if it never serves the value: --timeout runs
    out, exit 1 naming it, and the value is gone from every provider again."""
    cfg = lab.config_path
    name = f"_acme-challenge.slow.{HOST}"
    real = propagation.observe

    async def p1_lags(where: propagation.Address, *args: object) -> ServedTxt:
        served = await real(where, *args)  # type: ignore[arg-type]
        if where.provider == "p1":
            return ServedTxt(where.provider, where.server, where.address, None, None,
                             served.dnskey)
        return served

    monkeypatch.setattr(propagation, "observe", p1_lags)
    res = ms(cfg, "acme", "publish", f"slow.{HOST}", digest("slow"), "--wait", "--timeout", "1")
    monkeypatch.undo()
    assert res.rc == 1, res
    assert "timed out after 1s" in res.err and "p1 " in res.err, res.err
    assert "2/3 nameserver addresses ready; waiting for p1" in res.err, res.err  # progress
    assert "removed again where it had been written (p0, p1, p2)" in res.err, res.err
    assert all(v == set() for v in everywhere(lab, HOST, name))
    last = [r for r in history(ms, cfg, HOST) if r["kind"] == "acme"][-1]
    assert last["to_state"] == "publish-failed" and "not served in time" in last["reason"]
