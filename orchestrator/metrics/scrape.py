"""The gauges computed when Prometheus scrapes: what the state database says now (zones
by state, running processes by kind and step) and what depends on the clock (how long a
process has waited, how long until Model 1 signatures expire).

Reading the database at scrape time keeps these right across restarts and with several
replicas (each shows every zone's process, whoever drives it); the scrape runs in the
HTTP server's thread, never on the daemon's event loop.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector as RegistryCollector

from orchestrator.metrics.collector import Collector, step_of
from state.info import ProcessInfo

VERDICTS = ("in_sync", "out_of_sync", "failed", "unobserved")
ZONE_STATES = ("idle", "process", "stalled")


class ScrapeTime(RegistryCollector):
    """``zones()``: the configured zone names; ``running()``: the running processes (from
    the state database; an exception there fails the scrape, and /readyz says why)."""

    def __init__(self, events: Collector, zones: Callable[[], Sequence[str]],
                 running: Callable[[], list[ProcessInfo]]) -> None:
        self.events = events
        self.zones = zones
        self.running = running

    def collect(self) -> Iterator[GaugeMetricFamily]:
        names = list(self.zones())
        procs = [p for p in self.running() if p.zone in set(names)]
        self.events.forget_others({p.id for p in procs})
        yield from self._processes(names, procs)
        yield from self._verdicts(names)
        yield from self._clocks(set(names), {p.id: step_of(p.state) for p in procs})

    def _processes(self, names: list[str],
                   procs: list[ProcessInfo]) -> Iterator[GaugeMetricFamily]:
        by_step = GaugeMetricFamily("multisigner_processes", "Running processes by kind and "
                                    "step", labels=["kind", "step"])
        for (kind, step), n in sorted(Tally((p.kind, step_of(p.state)) for p in procs).items()):
            by_step.add_metric([kind, step], n)
        yield by_step
        state = {p.zone: "stalled" if (p.waiting_for or "").startswith("STALLED") else "process"
                 for p in procs}
        zones = GaugeMetricFamily("multisigner_zones", "Configured zones by state (idle, a "
                                  "process running, a process stalled)", labels=["state"])
        counts = Tally(state.get(z, "idle") for z in names)
        for name in ZONE_STATES:
            zones.add_metric([name], counts[name])
        yield zones
        stalled = GaugeMetricFamily("multisigner_process_stalled", "1 for a running process "
                                    "that waited past its timeout", labels=["zone", "kind",
                                                                            "step"])
        for p in procs:
            if state[p.zone] == "stalled":
                stalled.add_metric([p.zone, p.kind, step_of(p.state)], 1)
        yield stalled

    def _verdicts(self, names: list[str]) -> Iterator[GaugeMetricFamily]:
        with self.events.lock:
            verdicts = {z: self.events.verdicts.get(z, "unobserved") for z in names}
        total = GaugeMetricFamily("multisigner_zones_by_verdict", "Configured zones by the "
                                  "daemon's last verdict on them", labels=["verdict"])
        counts = Tally(verdicts.values())
        for name in VERDICTS:
            total.add_metric([name], counts[name])
        yield total
        each = GaugeMetricFamily("multisigner_zone_verdict", "1 for the daemon's last verdict "
                                 "on the zone", labels=["zone", "verdict"])
        for zone, verdict in sorted(verdicts.items()):
            each.add_metric([zone, verdict], 1)
        yield each

    def _clocks(self, zones: set[str], steps: dict[str, str]) -> Iterator[GaugeMetricFamily]:
        """``steps``: each running process's step now (a wait recorded in an earlier step
        is over, whoever moved the process on)."""
        now = datetime.now(UTC)
        with self.events.lock:
            waits = [w for pid, w in self.events.waits.items() if steps.get(pid) == w.step]
            expiry = {z: at for z, at in self.events.expiry.items() if z in zones}
            leases = len(self.events.leases)
        waiting = GaugeMetricFamily("multisigner_process_waiting_seconds", "How long a "
                                    "process has waited for its step's change to be observed",
                                    labels=["zone", "kind", "step", "on"])
        for w in waits:
            waiting.add_metric([w.zone, w.kind, w.step, w.on], (now - w.since).total_seconds())
        yield waiting
        horizon = GaugeMetricFamily("multisigner_signature_expiry_seconds", "Model 1: seconds "
                                    "until the served DNSKEY RRset's earliest signature "
                                    "expires", labels=["zone"])
        for zone, at in sorted(expiry.items()):
            horizon.add_metric([zone], (at - now).total_seconds())
        yield horizon
        yield GaugeMetricFamily("multisigner_leases_held", "Zone leases this controller "
                                "holds now", value=leases)
