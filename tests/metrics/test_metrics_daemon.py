"""``multisigner run --metrics-listen``: the daemon on the lab serves /metrics, /healthz
and /readyz, and the metrics move when their cause happens -- a rollover the scheduler
starts by policy (processes by kind and step, step durations against their RFC 7583
minimum, DNS observation lag, provider API latency, leases, passes) and a provider whose
API fails (the error counter by provider and status)."""

from __future__ import annotations

import http.server
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rollover.fakes import closed_port
from rollover.rollkit import (
    FAST,
    LAB,
    cli,
    daemon,
    exit_within,
    running_lab,
    step_until,
    sync_zones,
    with_api_url,
    write_config,
)

from metrics.scrapekit import fetch, json_daemon, present, reachable, scrape, total, until
from multisigner_lab import Lab

pytestmark = LAB

ZONE = "metrics.test."
LIFETIME = 5  # seconds: zsk_lifetime, so the scheduler starts a ZSK rollover by itself


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "metrics", providers=2, zones=[ZONE]) as running:
        sync_zones(running, [ZONE])
        yield running


class _Failing(http.server.BaseHTTPRequestHandler):
    """A provider API that answers every request with HTTP 503."""

    def do_GET(self) -> None:
        body = b'{"error": "maintenance"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _stop(child: object) -> None:
    child.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    exit_within(child, 30)  # type: ignore[arg-type]


def _finish(config: Path) -> None:
    """Leave no running process behind for the next test."""
    cli(config, "rollover", ZONE, "--abort")
    step_until(config, ZONE, lambda s: s in ("done", "aborted"), timeout=60)


def test_rollover_moves_the_metrics(lab: Lab, tmp_path: Path) -> None:
    config = write_config(lab, "metrics.toml", zones=[ZONE],
                          policy={**FAST, "zsk_lifetime": f"{LIFETIME}s"})
    time.sleep(LIFETIME + 0.5)  # the ZSKs are now older than their lifetime
    port = closed_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "daemon.log"
    try:
        with json_daemon(config, log, "--poll-interval", "1s",
                         "--metrics-listen", f"127.0.0.1:{port}") as child:
            until("the endpoint answers", lambda: reachable(base), 30)
            assert fetch(base, "/healthz") == (200, "ok\n")
            until("/readyz is 200 after the first scan",
                  lambda: fetch(base, "/readyz")[0] == 200, 30)
            first = scrape(base)
            until("the scheduler's ZSK rollover finishes its first step",
                  lambda: total(scrape(base), "multisigner_step_duration_seconds_count",
                                kind="zsk-rollover", step="publish") >= 1, 120)
            later = scrape(base)
            _stop(child)
    finally:
        _finish(config)
    # a pass and a lease: the last-pass time moves, leases were taken and given back
    assert total(later, "multisigner_daemon_last_pass_timestamp_seconds", **{"pass": "scan"}) \
        > total(first, "multisigner_daemon_last_pass_timestamp_seconds", **{"pass": "scan"})
    assert present(later, "multisigner_leases_held")
    assert total(later, "multisigner_zone_last_success_timestamp_seconds", zone=ZONE) > 0
    # the rollover: process and step metrics
    assert total(first, "multisigner_step_duration_seconds_count") == 0
    assert total(later, "multisigner_process_transitions_total", kind="zsk-rollover") >= 4
    assert total(later, "multisigner_processes", kind="zsk-rollover") == 1
    assert total(later, "multisigner_zones", state="process") == 1
    took = total(later, "multisigner_step_last_duration_seconds", kind="zsk-rollover",
                 step="publish")
    minimum = total(later, "multisigner_step_last_rfc7583_minimum_seconds",
                    kind="zsk-rollover", step="publish")
    assert 0 < minimum <= took, (minimum, took)
    assert total(later, "multisigner_dns_observation_lag_seconds_count",
                 kind="zsk-rollover") >= 1
    assert total(later, "multisigner_phase_work_seconds_count", kind="zsk-rollover",
                 phase="act") >= 1
    # provider API latency: the rollover created a key at a PowerDNS provider
    assert total(later, "multisigner_provider_request_seconds_count",
                 operation="POST /zones/{zone}/cryptokeys") >= 1
    assert total(later, "multisigner_provider_requests_total", status="ok") > \
        total(first, "multisigner_provider_requests_total", status="ok")
    # every JSON log line names the replica
    lines = [json.loads(line) for line in log.read_text().splitlines()
             if line.startswith("{")]
    assert lines and all(line.get("replica") for line in lines), lines[:3]


def test_provider_errors_are_counted(lab: Lab, tmp_path: Path, failing_api: str) -> None:
    config = with_api_url(lab, "failing.toml", "p1", failing_api)
    port = closed_port()
    base = f"http://127.0.0.1:{port}"
    with daemon(config, tmp_path / "daemon.log", "--poll-interval", "1s",
                "--metrics-listen", f"127.0.0.1:{port}") as child:
        until("the endpoint answers", lambda: reachable(base), 30)
        until("p1's HTTP 503 answers are counted",
              lambda: total(scrape(base), "multisigner_provider_errors_total",
                            provider="p1", status="503") >= 1, 60)
        samples = scrape(base)
        _stop(child)
    assert total(samples, "multisigner_provider_errors_total", provider="p0") == 0
    assert total(samples, "multisigner_provider_requests_total", provider="p0",
                 status="ok") >= 1
    text = (tmp_path / "daemon.log").read_text()
    assert "daemon started" in text
    # text lines of the daemon name the replica too: HH:MM:SS [HOST:PID:NONCE] message
    started = next(line for line in text.splitlines() if "daemon started" in line)
    assert started.split(" ")[1].startswith("["), started


def test_a_ksk_rollover_records_the_parent_wait(lab: Lab, tmp_path: Path) -> None:
    """The swap-ds step waits for the lab's parent to follow the CDS: parent wait time."""
    config = write_config(lab, "ksk.toml", zones=[ZONE], policy=FAST)
    port = closed_port()
    base = f"http://127.0.0.1:{port}"
    try:
        assert cli(config, "rollover", ZONE, "--key", "ksk", "--signer", "p0").rc == 0
        with daemon(config, tmp_path / "daemon.log", "--poll-interval", "1s",
                    "--metrics-listen", f"127.0.0.1:{port}") as child:
            until("the endpoint answers", lambda: reachable(base), 30)
            until("the swap-ds step saw the parent follow",
                  lambda: total(scrape(base), "multisigner_parent_wait_seconds_count",
                                kind="ksk-rollover") >= 1, 120)
            samples = scrape(base)
            _stop(child)
    finally:
        _finish(config)
    waited = total(samples, "multisigner_parent_wait_seconds_sum", kind="ksk-rollover")
    assert waited > 0
    # the CLI began publish (rollover without --wait): the daemon never saw the step
    # start, so it reports no length for it rather than a wrong one
    assert total(samples, "multisigner_step_duration_seconds_count", kind="ksk-rollover",
                 step="publish") == 0
    assert total(samples, "multisigner_phase_work_seconds_count", kind="ksk-rollover") >= 1
