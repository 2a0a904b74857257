"""Starting and stopping the metrics endpoint of ``multisigner run``."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from core import events
from core.errors import UsageError
from orchestrator.metrics.collector import Collector
from orchestrator.metrics.scrape import ScrapeTime
from orchestrator.metrics.server import HttpServer, Readiness, application
from state.store import StateStore


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9477``, ``[::1]:9477`` or ``:9477`` (every IPv4 address) -> host,
    port; UsageError for anything else."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--metrics-listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:9477 "
                         "or [::1]:9477")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--metrics-listen {text!r}: {host!r} is not an IP address (give "
                         "the address to listen on, e.g. 127.0.0.1)") from None
    return host, int(port_text)


@dataclass
class MetricsService:
    """The running endpoint; ``close()`` stops serving and unsubscribes."""

    server: HttpServer
    collector: Collector
    unsubscribe: Callable[[], None]

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def close(self) -> None:
        self.unsubscribe()
        self.server.close()


def start_metrics(listen: str, store: StateStore, zones: Callable[[], Sequence[str]],
                  running: Callable[[], bool], poll_interval: float) -> MetricsService:
    """Serve metrics for the daemon at ``listen``; raises UsageError if the address cannot
    be bound (in use, not an address of this host)."""
    host, port = parse_listen(listen)
    registry = CollectorRegistry()
    collector = Collector(registry)
    registry.register(ScrapeTime(collector, zones,
                                 lambda: store.processes(status="running")))
    # the cheapest read there is (one primary-key lookup) tells whether the database answers
    ready = Readiness(collector, lambda: store.lease_info(""), running, poll_interval)
    try:
        server = HttpServer(host, port, application(registry, ready))
    except OSError as exc:
        raise UsageError(f"--metrics-listen {listen}: cannot listen there: "
                         f"{exc.strerror or exc}") from None
    server.start()
    return MetricsService(server, collector, events.subscribe(collector))


__all__ = ["MetricsService", "parse_listen", "start_metrics"]
