"""How a publish fails without leaving anything behind, and how it keeps a value that a
provider drops: a zone whose lease another controller holds (waited for, then refused,
nothing written); a nameserver that does not serve the value before --timeout (the value
is removed again everywhere); a value deleted at one provider's API while the publish
waits (written again; success only once every nameserver serves it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from acmekit import HOST, digest, everywhere, ms_start, set_everywhere, txt_served
from integration.itkit import (
    NEEDS_SERVERS,
    Run,
    api_snapshot,
    history,
    nameservers,
    provider_entry,
    write_config,
)
from txtgate import TxtGate

from multisigner_lab import Lab
from orchestrator.acme import rrsets
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


def _gated(lab: Lab, path: Path, provider: str, gate: TxtGate) -> Path:
    """The lab's config with ``provider``'s nameserver reached through ``gate``."""
    return write_config(lab, path, lambda d: provider_entry(d, provider).update(
        nameservers=[gate.address]))


def _served(lab: Lab, name: str) -> dict[str, set[str]]:
    """Per provider: the TXT values its real nameserver serves (not through a gate)."""
    return {where.split()[0]: values for where, values in txt_served(lab, HOST, name).items()}


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def test_wait_timeout_removes_the_value_again(lab: Lab, ms: Run, tmp_path: Path) -> None:
    """p1's nameserver lags behind its API (it refuses the TXT query: a real server behind
    a gate that stays closed): --timeout runs out, exit 1 naming it, and the value is
    gone from every provider again. p1's API holds the value all along, so nothing is
    written again: only a provider whose API lost the value is."""
    name = f"_acme-challenge.slow.{HOST}"
    with TxtGate(nameservers(lab)["p1"][0]) as gate:
        cfg = _gated(lab, tmp_path / "gated.toml", "p1", gate)
        res = ms(cfg, "acme", "publish", f"slow.{HOST}", digest("slow"), "--wait",
                 "--timeout", "3")
    assert gate.refused > 0
    assert res.rc == 1, res
    assert "timed out after 3s" in res.err and "p1 " in res.err, res.err
    assert "2/3 nameserver addresses ready; waiting for p1" in res.err, res.err  # progress
    assert "removed again where it had been written (p0, p1, p2)" in res.err, res.err
    assert "written again" not in res.err, res.err
    assert all(v == set() for v in everywhere(lab, HOST, name))
    mine = [r for r in history(ms, cfg, HOST) if r["kind"] == "acme"
            and r["evidence"]["name"] == name]
    assert [r["to_state"] for r in mine] == ["published", "publish-failed"], mine
    assert "not served in time" in mine[-1]["reason"]


def test_a_value_dropped_while_waiting_is_written_again(lab: Lab, ms: Run,
                                                        tmp_path: Path) -> None:
    """The value is deleted at p1 through p1's own API, behind the controller's back,
    while ``publish --wait`` waits (p2's nameserver is held back so that the wait lasts).
    The hook does not return while any nameserver lacks the value; it finds p1's API
    without it, writes it again, and returns success only once every nameserver of every
    provider serves it."""
    name, value = f"_acme-challenge.drop.{HOST}", digest("drop")
    with TxtGate(nameservers(lab)["p2"][0]) as gate:
        cfg = _gated(lab, tmp_path / "gated.toml", "p2", gate)
        proc = ms_start(cfg, "acme", "publish", f"drop.{HOST}", value, "--wait",
                        "--timeout", "60")
        try:
            _until(lambda: all(v == {value} for v in _served(lab, name).values()), 20,
                   "the value written at every provider")
            # the drop (that p1's API really lost it shows in the history: "republished")
            set_everywhere(lab, HOST, name, "TXT", [], providers=["p1"])
            _until(lambda: _served(lab, name)["p1"] == {value}, 15, "p1 serves it again")
            time.sleep(0.5)
            assert proc.poll() is None, "the hook returned while p2 did not serve the value"
            gate.opened.set()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, out + err
    assert "had been dropped at p1 (its API no longer held it); written again" in err, err
    assert all(v == {value} for v in everywhere(lab, HOST, name))
    mine = [r for r in history(ms, lab.config_path, HOST) if r["kind"] == "acme"
            and r["evidence"]["name"] == name]
    assert [r["to_state"] for r in mine] == ["published", "republished", "propagated"], mine
    assert mine[1]["evidence"]["changed"] == ["p1"]
    assert ms(lab.config_path, "acme", "cleanup", f"drop.{HOST}", value).rc == 0
    assert all(v == set() for v in everywhere(lab, HOST, name))
