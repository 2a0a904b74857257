"""The lab's parent-agent config, without starting anything."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from core.config import load_config
from multisigner_lab import config
from multisigner_lab.parent_automation import agent_config_toml, agent_history

STATE = {
    "parent": {"api_url": "http://127.0.0.9:8081", "api_key": "k\"ey", "address": "127.0.0.9",
               "dns_port": 5300},
    "providers": [
        {"ns_name": "ns1.p0.test.", "address": "127.0.0.10", "dns_port": 5301},
        {"ns_name": "ns1.p1.test.", "address": "127.0.0.11", "dns_port": 5302},
    ],
    "scanner_interval": 0.25,
    "ds_ttl": 5,
}


def test_agent_config_loads_as_the_product_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    config.write_private(path, agent_config_toml(tmp_path, STATE, 5399))
    loaded = load_config(path)
    agent = loaded.parent_agent
    assert agent is not None
    assert agent.zone == "test." and agent.provider == "parent"
    assert [str(a) for a in agent.listen] == ["127.0.0.1:5399"]
    assert agent.hosts == {"ns1.p0.test.": "127.0.0.10:5301", "ns1.p1.test.": "127.0.0.11:5302"}
    assert agent.scan_interval == timedelta(milliseconds=250)
    assert agent.ttl == 5
    assert loaded.state.url == f"sqlite:///{tmp_path}/parent-agent/agent.db"
    (parent,) = loaded.providers
    assert parent.name == "parent" and parent.api_key is not None
    assert parent.api_key.get_secret_value() == 'k"ey'  # escaped, not cut off


def test_no_agent_history_before_the_agent_ran(tmp_path: Path) -> None:
    assert agent_history(tmp_path) == []
