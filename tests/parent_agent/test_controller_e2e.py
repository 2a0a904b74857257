"""The controller's Model 2 processes finishing at a parent that runs the agent (scheduled
CDS/CSYNC scans with the strict consistency rules) instead of the lab's lenient scanner:
sync, signer add, a KSK rollover, signer remove, each to the end."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentkit import AgentThread, agent_config, parent_provider
from prereq import needs

from multisigner_lab import Lab

pytestmark = [pytest.mark.lab, needs("pdns_server", what="Debian package pdns-server")]

ZONE = "example.test."


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    # Delegated to p0 only: the lab's default start (every provider delegated, the DS
    # naming p0's KSK only) serves DNSKEY RRsets the DS does not chain to at p1 and p2,
    # which the agent rightly never validates.
    with Lab.start(tmp_path / "lab", providers=2, scanner=False, unbound=False,
                   delegated=["p0"]) as running:
        yield running


def cli(lab: Lab, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config",
                           str(lab.config_path), *args], capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])


def test_model2_lifecycle_through_the_agent(lab: Lab, tmp_path: Path) -> None:
    config = agent_config(lab, scan_interval="500ms")
    agent = AgentThread(config, parent_provider(lab), tmp_path / "agent.db")
    agent.start(schedule=True)
    try:
        cli(lab, "sync", "--all")
        cli(lab, "signer", "add", ZONE, "p1", "--wait")
        assert lab.parent_ns(ZONE) == ["ns1.p0.test.", "ns1.p1.test."]
        cli(lab, "rollover", ZONE, "--key", "ksk", "--signer", "p1", "--wait")
        cli(lab, "signer", "remove", ZONE, "p0", "--wait")
        accepted = [h.kind for h in agent.history() if h.to_state == "accepted"]
    finally:
        agent.stop()
    assert accepted == ["scan-cds", "scan-csync", "scan-cds", "scan-csync", "scan-cds"]
    p1_ksk = sorted(f"{k.key_tag} 13 2" for k in lab.keys("p1", ZONE)
                    if k.flags == 257 and k.active)
    assert [" ".join(ds.split()[:3]) for ds in lab.parent_ds(ZONE)] == p1_ksk
    assert lab.parent_ns(ZONE) == ["ns1.p1.test."]
