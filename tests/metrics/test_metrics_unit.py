"""The metrics package without a lab: step clocks from synthetic events, /readyz's
reasons, and --metrics-listen parsing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from core import events
from core.errors import UsageError
from orchestrator.metrics.collector import Collector
from orchestrator.metrics.scrape import ScrapeTime
from orchestrator.metrics.server import Readiness
from orchestrator.metrics.service import parse_listen, start_metrics
from state.info import ProcessInfo
from state.store import StateStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_step_is_timed_from_its_act_to_the_next_step() -> None:
    clock, registry = Clock(), CollectorRegistry()
    c = Collector(registry, clock)
    at = datetime.now(UTC)
    c(events.StepStarted("z.", "p1", "zsk-rollover", "publish:act"))
    clock.now += 3
    c(events.StepObserved("z.", "p1", "zsk-rollover", "publish:observe", 1.5, 4.0, False))
    clock.now += 4
    c(events.PhaseEntered("z.", "p1", "zsk-rollover", "activate:act", at))
    labels = {"kind": "zsk-rollover", "step": "publish"}
    assert _value(registry, "multisigner_step_last_duration_seconds", **labels) == 7
    assert _value(registry, "multisigner_step_last_rfc7583_minimum_seconds", **labels) == 4
    assert _value(registry, "multisigner_dns_observation_lag_seconds_count",
                  kind="zsk-rollover") == 1
    clock.now += 2
    c(events.PhaseEntered("z.", "p1", "zsk-rollover", "done", at))
    assert _value(registry, "multisigner_step_last_duration_seconds",
                  kind="zsk-rollover", step="activate") == 2
    assert _value(registry, "multisigner_processes_finished_total",
                  kind="zsk-rollover", status="done") == 1


def test_a_step_under_way_at_start_has_no_length() -> None:
    clock, registry = Clock(), CollectorRegistry()
    c = Collector(registry, clock)
    c(events.StepStarted("z.", "p1", "zsk-rollover", "publish:hold"))
    clock.now += 5
    c(events.PhaseEntered("z.", "p1", "zsk-rollover", "activate:act", datetime.now(UTC)))
    assert _value(registry, "multisigner_step_duration_seconds_count",
                  kind="zsk-rollover", step="publish") is None


def test_readyz_names_every_reason() -> None:
    clock, registry = Clock(), CollectorRegistry()
    c = Collector(registry, clock)

    def down() -> None:
        raise OSError("connection refused")

    ready = Readiness(c, down, lambda: False, poll_interval=10)
    problems = ready.problems()
    assert any("state database unreachable" in p for p in problems)
    assert any("daemon loop is not running" in p for p in problems)
    assert any("no scan" in p for p in problems)
    now = datetime.now(UTC)
    c(events.DaemonPass(True, 1, now - timedelta(seconds=1), now))
    c(events.LeaseChanged("z.", "renewed", 120))
    fine = Readiness(c, lambda: None, lambda: True, poll_interval=10)
    assert fine.problems() == []
    clock.now += 121  # neither the lease nor the scan was renewed since
    assert [p.split(":")[0] for p in fine.problems()] == [
        "lease renewal behind for 1 zone(s)", "the last scan of every zone ended 121s ago "
        "(limit 90s)"]


def test_provider_errors_by_status() -> None:
    registry = CollectorRegistry()
    c = Collector(registry)
    c(events.ProviderCall("p1", "GET /zones/{zone}", 0.1, False, "503"))
    c(events.ProviderCall("p1", "GET /zones/{zone}", 0.1, True))
    assert _value(registry, "multisigner_provider_errors_total", provider="p1",
                  status="503") == 1
    assert _value(registry, "multisigner_provider_requests_total", provider="p1",
                  status="ok") == 1


@pytest.mark.parametrize(("text", "want"), [("127.0.0.1:9477", ("127.0.0.1", 9477)),
                                            ("[::1]:0", ("::1", 0)),
                                            (":9477", ("0.0.0.0", 9477))])
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["9477", "localhost:9477", "127.0.0.1:http", "1.2.3.4:70000"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(UsageError, match="--metrics-listen"):
        parse_listen(text)


def test_a_bad_address_is_a_usage_error_before_anything_runs(
        capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main

    rc = main(["--config", "/nonexistent/multisigner.toml", "run", "--metrics-listen",
               "localhost:9477"])
    assert rc == 2
    assert "--metrics-listen 'localhost:9477'" in capsys.readouterr().err


def test_an_address_in_use_is_a_usage_error(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    first = start_metrics("127.0.0.1:0", store, list, lambda: True, 60)
    try:
        with pytest.raises(UsageError, match="cannot listen there"):
            start_metrics(f"127.0.0.1:{first.address[1]}", store, list, lambda: True, 60)
    finally:
        first.close()
        store.close()


def test_log_lines_name_the_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from orchestrator import logs

    record = logging.LogRecord("multisigner", logging.INFO, __file__, 1, "hello", None, None)
    monkeypatch.setenv(logs.REPLICA_ENV, "ctl-a")
    assert json.loads(logs._JsonFormatter().format(record))["replica"] == "ctl-a"
    monkeypatch.delenv(logs.REPLICA_ENV)
    _host, pid, _nonce = json.loads(logs._JsonFormatter().format(record))["replica"].split(":")
    assert int(pid) == os.getpid()
    text = logs._TextFormatter()
    assert "[" not in text.format(record)
    text.named = True
    assert text.format(record).split(" ")[1] == f"[{logs.replica()}]"


def _proc(pid: str, zone: str, state: str, waiting_for: str | None = None) -> ProcessInfo:
    now = datetime.now(UTC)
    return ProcessInfo(pid, zone, "zsk-rollover", "p0", state, "running", now, now, None,
                       None, waiting_for, {}, "test")


def test_scrape_shows_only_what_runs_now() -> None:
    """Zones and processes from the store; a wait only while its process is still in that
    step (a process moved on or ended by another controller emits nothing here)."""
    registry = CollectorRegistry()
    c = Collector(registry)
    running = [_proc("a", "a.", "publish:observe"),
               _proc("b", "b.", "activate:observe", "STALLED: served")]
    registry.register(ScrapeTime(c, lambda: ["a.", "b.", "c."], lambda: running))
    since = datetime.now(UTC) - timedelta(seconds=30)
    for pid, zone, state in (("a", "a.", "publish:observe"), ("b", "b.", "publish:observe"),
                             ("gone", "c.", "publish:observe")):
        c(events.Waiting(zone, pid, "zsk-rollover", state, "served", since, False, False))
    c(events.ZoneChecked("c.", True, datetime.now(UTC) + timedelta(hours=1)))
    c(events.ZoneChecked("removed.", True, datetime.now(UTC)))
    assert _value(registry, "multisigner_zones", state="idle") == 1
    assert _value(registry, "multisigner_zones", state="process") == 1
    assert _value(registry, "multisigner_zones", state="stalled") == 1
    assert _value(registry, "multisigner_processes", kind="zsk-rollover", step="publish") == 1
    assert _value(registry, "multisigner_process_stalled", zone="b.", kind="zsk-rollover",
                  step="activate") == 1
    waited = _value(registry, "multisigner_process_waiting_seconds", zone="a.",
                    kind="zsk-rollover", step="publish", on="nameservers")
    assert waited is not None and waited >= 30
    for zone in ("b.", "c."):  # b moved on to activate; "gone" is not running
        assert _value(registry, "multisigner_process_waiting_seconds", zone=zone,
                      kind="zsk-rollover", step="publish", on="nameservers") is None
    assert set(c.waits) == {"a", "b"}
    horizon = _value(registry, "multisigner_signature_expiry_seconds", zone="c.")
    assert horizon is not None and 3500 < horizon <= 3600
    assert _value(registry, "multisigner_signature_expiry_seconds", zone="removed.") is None
    assert _value(registry, "multisigner_zone_verdict", zone="c.", verdict="in_sync") == 1
    assert _value(registry, "multisigner_zones_by_verdict", verdict="unobserved") == 2
