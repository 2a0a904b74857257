"""docs/monitoring/: the alert rules pass ``promtool check rules`` and have the structure
Prometheus reads; the rules and the dashboard use only metrics the daemon exports."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import yaml
from prereq import needs
from prometheus_client import CollectorRegistry

from core import events
from orchestrator.metrics.collector import Collector
from orchestrator.metrics.scrape import ScrapeTime

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
RULES = DOCS / "alerts.yml"
DASHBOARD = DOCS / "grafana-dashboard.json"
NAME = re.compile(r"\bmultisigner_[a-z0-9_]+")
ALERTS = {"MultisignerZoneInconsistent", "MultisignerProcessStalled",
          "MultisignerSignaturesExpiring", "MultisignerProviderFailing"}


def exported() -> set[str]:
    """Every sample name the daemon's registry exports (each metric given a value)."""
    registry = CollectorRegistry()
    c = Collector(registry)
    registry.register(ScrapeTime(c, lambda: ["z."], list))
    now = datetime.now(UTC)
    for event in (
            events.StepStarted("z.", "p", "zsk-rollover", "publish:act"),
            events.StepObserved("z.", "p", "zsk-rollover", "publish:observe", 1, 2, True),
            events.StepObserved("z.", "p", "zsk-rollover", "publish:observe", 1, 2, False),
            events.Waiting("z.", "q", "sync", "a:observe", "x", now, True, True),
            events.PhaseEntered("z.", "p", "zsk-rollover", "done", now),
            events.StepTimed("z.", "p", "zsk-rollover", "publish:act", 0.1, False),
            events.ProviderCall("p1", "GET /", 0.1, False, "503"),
            events.DaemonPass(True, 1, now, now),
            events.ZonePassed("z.", None), events.ZonePassed("z.", "boom"),
            events.ZoneChecked("z.", True, now),
            events.LeaseChanged("z.", "lost", 120)):
        c(event)
    return {s.name for family in registry.collect() for s in family.samples} | {
        family.name for family in registry.collect()}


def test_rules_have_the_structure_prometheus_reads() -> None:
    doc = yaml.safe_load(RULES.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= ALERTS
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["expr"].strip() and rule["annotations"]["summary"], rule


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    names = exported()
    used = set(NAME.findall(RULES.read_text()))
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(NAME.findall(target["expr"]))
    # a histogram is referred to by its series (_bucket, _count, _sum)
    missing = {n for n in used if n not in names}
    assert not missing, f"not exported: {sorted(missing)}"


@needs("promtool", what="Debian package prometheus")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout
