"""Helpers of the DSYNC end-to-end test: the product's ``multisigner parent-agent`` as a
real process in front of a lab's parent zone, the controller's config switched to
``[zones.parent] type = "dsync"``, and the delegation made unsigned (no DS) first."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
from rollover.rollkit import REPO, Observed, Result, history, write_config
from rollover.watcher import Breach

from multisigner_lab import Lab
from multisigner_lab.net import free_port


@dataclass
class AgentProcess:
    """``multisigner --config CONFIG parent-agent`` running; its config and port."""

    config: Path
    port: int
    proc: subprocess.Popen[str]
    log: Path

    def history(self) -> list[dict[str, Any]]:
        """The agent's history of the parent zone (``history test. --json``)."""
        done = run_cli(self.config, "history", "test.", "--json")
        assert done.rc == 0, done.text
        data: list[dict[str, Any]] = json.loads(done.out)
        return data


def agent_toml(lab: Lab, directory: Path, port: int, *, checks: int,
               interval: str) -> Path:
    """The parent operator's config: the parent zone's PowerDNS, the agent's own state
    database, the bootstrap methods (``at-apex`` then ``unsigned``), the lab's child
    nameservers (on random ports, so named in ``hosts``), no scheduled scans (the DS must
    come in by UPDATE, not by a scan of the CDS)."""
    p = lab.parent
    hosts = ", ".join(f'"{s.ns_name}" = "{s.nameserver}"' for s in lab.providers)
    path = directory / "agent.toml"
    path.write_text(f"""
[state]
url = "sqlite:///{directory / 'agent.db'}"

[[providers]]
name = "parent"
type = "powerdns"
api_url = "{p.api_url}"
api_key = "{p.api_key}"
nameservers = ["{p.nameserver}"]

[parent_agent]
zone = "test."
provider = "parent"
listen = ["127.0.0.1:{port}"]
target = "updater.test."
bootstrap = ["at-apex", "unsigned"]
bootstrap_checks = {checks}
bootstrap_interval = "{interval}"
key_directory = "{directory / 'agent-keys'}"
notify = false
scan_interval = "0s"
ttl = {lab.ds_ttl}
hosts = {{ {hosts} }}
""")
    path.chmod(0o600)
    return path


def run_cli(config: Path, *args: str, timeout: float = 60) -> Result:
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=REPO)
    return Result(done.returncode, done.stdout, done.stderr)


@contextlib.contextmanager
def parent_agent(lab: Lab, directory: Path, *, checks: int = 3,
                 interval: str = "300ms") -> Iterator[AgentProcess]:
    """The agent as a real process, listening; always stopped (SIGTERM, exit 0 checked)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port("127.0.0.1")
    config = agent_toml(lab, directory, port, checks=checks, interval=interval)
    log = directory / "agent.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config",
                                 str(config), "parent-agent"], stdout=subprocess.PIPE,
                                stderr=err, text=True, cwd=REPO, env=dict(os.environ))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in line, log.read_text()
        yield AgentProcess(config, port, proc, log)
        proc.terminate()
        assert proc.wait(15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def dsync_config(lab: Lab, name: str, zone: str, sig0: Path,
                 policy: dict[str, Any]) -> Path:
    """The lab's controller config for ``zone`` alone, its parent driven by DSYNC/UPDATE
    with SIG(0) keys in ``sig0`` (made 0700 here)."""
    sig0.mkdir(mode=0o700, exist_ok=True)

    def mutate(data: dict[str, Any]) -> None:
        parent = data["zones"][0]["parent"]
        parent.update(type="dsync", sig0_directory=str(sig0))

    return write_config(lab, name, zones=[zone], policy=policy, mutate=mutate)


def unsign_delegation(lab: Lab, zone: str) -> None:
    """Delete the zone's DS RRset at the parent (an unsigned delegation) and wait until
    the parent's server no longer serves it."""
    with lab.parent_pdns_api() as api:
        r = api.patch("/zones/test.", json={"rrsets": [
            {"name": zone, "type": "DS", "changetype": "DELETE"}]})
        assert r.status_code == 204, r.text
    deadline = time.monotonic() + 10
    while lab.parent_ds(zone):
        assert time.monotonic() < deadline, f"the parent still serves a DS for {zone}"
        time.sleep(0.1)


def sent(config: Path, zone: str, process_id: str | None = None) -> list[tuple[str, str]]:
    """The ``parent: sent ...`` transitions of the controller's history (of one process,
    or of all): (at, reason), oldest first."""
    return [(e["at"], e["reason"]) for e in history(config, zone)
            if str(e["reason"] or "").startswith("parent: sent")
            and process_id in (None, e["process_id"])]


def tags_of(reason: str) -> list[int]:
    """The key tags a ``parent: sent`` reason names: the SIG(0) key of a bootstrap, else
    the DS RRset sent (``DS = 123, 456``)."""
    if found := re.search(r"SIG\(0\) key (\d+)", reason):
        return [int(found.group(1))]
    found = re.search(r"DS = ([\d, ]+)", reason)
    return [int(t) for t in found.group(1).split(",")] if found else []


def accepted_updates(entries: list[dict[str, Any]], child: str) -> list[list[str]]:
    """The changes (``add NAME TYPE RDATA``, ...) of each UPDATE from ``child`` the
    agent's history shows accepted, oldest first."""
    return [list(e["evidence"]["change"]) for e in entries
            if e["kind"] == "update" and e["to_state"] == "accepted"
            and e["evidence"].get("child") == child]


def resolver_ad(lab: Lab, zone: str) -> bool:
    """Whether the lab's Unbound answers the zone's SOA validated (AD)."""
    q = dns.message.make_query(zone, "SOA", want_dnssec=True)
    address, port = lab.resolver
    answer = dns.query.udp(q, address, port=port, timeout=3)
    return answer.rcode() == dns.rcode.NOERROR and bool(answer.flags & dns.flags.AD)


def secure_breaches(obs: Observed) -> list[Breach]:
    """The watcher's breaches at instants when a resolver may hold a DS RRset: before the
    parent first served one the delegation was insecure (a resolver validates nothing of
    the zone, so signatures its cached DNSKEY RRsets do not cover do no harm)."""
    first_ds = min((s.first_seen for s in obs.watcher.model.ds_sets.values()),
                   default=float("inf"))
    return [b for b in obs.breaches if b.at >= first_ds]
