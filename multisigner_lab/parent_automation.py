"""What keeps the lab's parent zone in step with its children: the product's own parent
agent, ``multisigner parent-agent`` (docs/parent-agent.md), run as a lab process.

It runs ``multisigner --config DIR/parent-agent/agent.toml parent-agent``: scheduled scans
every ``scanner_interval`` of every delegated child with the agent's strict rules (every
delegated address must agree, the DNSKEY RRset at each must chain to a DS at the parent,
a CDS signed only by a brand-new KSK is refused), NOTIFY(CDS/CSYNC) answered (the
controller finds the agent through the ``_dsync.test.`` records it publishes), new DS/NS
RRsets written with TTL ``ds_ttl`` (existing ones keep theirs). Its history (kinds
``scan-cds``, ``scan-csync``, ...; zone ``test.``) is in a state database of its own,
``DIR/parent-agent/agent.db``, so the controller's history is unchanged.

The agent bootstraps no DS from CDS (an unsigned delegation stays unsigned): a test that
removes a zone's DS and wants one back registers it itself, as the zone's owner would
(:meth:`multisigner_lab.base.LabBase.register_ds`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from multisigner_lab import config, proc
from multisigner_lab.net import free_port
from multisigner_lab.zones import PARENT_ZONE

AGENT_DIR = "parent-agent"
AGENT_CONFIG = "agent.toml"
AGENT_DB = "agent.db"
AGENT_TARGET = "updater.test."
PROCESS_NAME = "parent-agent"  # in lab.json and Lab.alive()


def agent_dir(directory: Path) -> Path:
    return directory / AGENT_DIR


def agent_config_toml(directory: Path, state: Mapping[str, Any], port: int) -> str:
    """The agent's config: the lab's parent as its provider, every lab nameserver in
    ``hosts`` (they listen on random ports), its own state database."""
    q = config.toml_str
    parent = state["parent"]
    hosts = ", ".join(f"{q(str(p['ns_name']))} = {q(_hostport(p))}" for p in state["providers"])
    interval_ms = max(1, round(float(state.get("scanner_interval", 0.5)) * 1000))
    return "\n".join([
        "# Written by the multisigner lab: its parent's agent; the API key is literal (0600).",
        "[state]",
        f"url = {q('sqlite:///' + str(agent_dir(directory) / AGENT_DB))}",
        "",
        "[[providers]]",
        'name = "parent"',
        'type = "powerdns"',
        f"api_url = {q(str(parent['api_url']))}",
        f"api_key = {q(str(parent['api_key']))}",
        f"nameservers = {config.toml_list([_hostport(parent)])}",
        "",
        "[parent_agent]",
        f"zone = {q(PARENT_ZONE)}",
        'provider = "parent"',
        f"listen = {config.toml_list([f'127.0.0.1:{port}'])}",
        f"target = {q(AGENT_TARGET)}",
        f'scan_interval = "{interval_ms}ms"',
        f"ttl = {int(state['ds_ttl'])}",
        "rate_limit = 1000",  # a test's burst of NOTIFYs from one address is no flood
        f"hosts = {{ {hosts} }}",
        "",
    ])


def _hostport(server: Mapping[str, Any]) -> str:
    return f"{server['address']}:{server['dns_port']}"


def start_agent(directory: Path, state: Mapping[str, Any]) -> proc.Proc:
    """``multisigner parent-agent`` for the lab in ``directory``; ready once it listens
    (it has published its DSYNC records in the parent zone by then)."""
    where = agent_dir(directory)
    where.mkdir(parents=True, exist_ok=True)
    path = where / AGENT_CONFIG
    config.write_private(path, agent_config_toml(directory, state, free_port("127.0.0.1")))
    argv = [sys.executable, "-m", "orchestrator.cli", "--config", str(path), "parent-agent"]
    p = proc.spawn(PROCESS_NAME, argv, where, env=proc.child_env())
    proc.wait_ready(p, lambda: "listening on" in p.log.read_text(errors="replace"), 30.0)
    return p


class ParentAutomation:
    """What a lab offers about its parent's agent (mixed into ``LabBase``, which supplies
    the lab's directory, state, processes and ``_add``/``_save``)."""

    directory: Path
    state: dict[str, Any]
    procs: list[proc.Proc]

    def _add(self, *, process: proc.Proc | None = None, socket_dir: Path | None = None) -> None:
        raise NotImplementedError

    def _save(self) -> None:
        raise NotImplementedError

    def start_parent_automation(self) -> None:
        """Start the parent agent (no-op while it runs): tests stop it to freeze the
        parent's DS and NS, then start it again."""
        if any(p.name == PROCESS_NAME and p.alive() for p in self.procs):
            return
        self._add(process=start_agent(self.directory, self.state))
        self._save()

    def stop_parent_automation(self) -> None:
        """Stop the parent agent (every instance started so far): the parent's DS and NS
        then stay as they are, whatever the children publish."""
        for p in self.procs:
            if p.name == PROCESS_NAME:
                proc.stop(p)

    def parent_history(self, *kinds: str) -> list[dict[str, Any]]:
        """The parent agent's history entries (``multisigner history test. --json`` with
        its config), oldest first, only ``kinds`` (e.g. ``"scan-cds"``) when given."""
        return agent_history(self.directory, kinds)

    @property
    def parent_agent_config(self) -> Path:
        """The parent agent's config (``multisigner --config ... history test.``)."""
        return agent_dir(self.directory) / AGENT_CONFIG

    @property
    def parent_agent_log(self) -> Path:
        return agent_dir(self.directory) / "server.log"


def agent_history(directory: Path, kinds: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The agent's history entries (oldest first; only ``kinds`` when given) as
    ``multisigner history test. --json`` shows them (kind, to_state, actor, reason,
    evidence, ...). Empty while the agent has written none (or never ran)."""
    db = agent_dir(directory) / AGENT_DB
    if not db.exists():
        return []
    from state.store import StateStore  # the product's store, read-only use

    store = StateStore.open(f"sqlite:///{db}")
    try:
        entries = store.history(PARENT_ZONE)
    finally:
        store.close()
    return [h.as_json() for h in entries if not kinds or h.kind in kinds]
