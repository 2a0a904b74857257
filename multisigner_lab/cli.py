"""What ``multisigner lab up|down|info`` does; the main CLI parses arguments and prints.

``lab up`` leaves the servers running after the command exits (each is in its own
session); ``lab down`` finds them again through ``DIR/lab.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multisigner_lab import config
from multisigner_lab.errors import LabError
from multisigner_lab.lab import DEFAULT_ZONES, Lab
from multisigner_lab.model1 import Model1Lab


def lab_up(
    directory: Path,
    providers: int = 3,
    zones: Sequence[str] = DEFAULT_ZONES,
    ttl: int = 2,
    model: int = 2,
    delegated: Sequence[str] | None = None,
) -> Lab | Model1Lab:
    """Start a lab in ``directory`` and leave it running: ``model`` 2 = PowerDNS providers
    each with its own KSK (:class:`Lab`); 1 = Knot providers in offline-KSK mode and the
    owner KSK in a SoftHSM2 token (:class:`Model1Lab`). ``delegated``: the providers the
    parent delegates to at first (default all; the others can join with ``signer add``)."""
    if model == 1:
        return Model1Lab.start(directory, providers, zones, ttl, ds_ttl=ttl,
                               delegated=delegated)
    if model != 2:
        raise LabError(f"model must be 1 or 2, not {model!r}")
    return Lab.start(directory, providers, zones, ttl, ds_ttl=ttl, delegated=delegated)


def _load(directory: Path) -> Lab | Model1Lab:
    """The lab in ``directory``, of either model (``lab.json`` says which)."""
    try:
        model = config.read_state(directory.resolve()).get("model", 2)
    except (OSError, ValueError):
        model = 2  # Lab.load says what is wrong
    return Model1Lab.load(directory) if model == 1 else Lab.load(directory)


def lab_down(directory: Path) -> None:
    """Stop the lab recorded in ``directory`` (no-op for processes already gone)."""
    Lab.load(directory).stop()


def lab_info(directory: Path) -> dict[str, Any]:
    """The lab in ``directory`` as JSON-able data, without API keys (they are in the
    0600 config file), plus ``usage``: commands to try it."""
    lab = _load(directory)
    alive = set(lab.alive())
    info: dict[str, Any] = {
        "directory": str(lab.directory),
        "config": str(lab.config_path),
        "running": bool(alive),
        "processes": [
            {"name": p.name, "pid": p.pid, "alive": p.name in alive, "log": str(p.log)}
            for p in lab.procs
        ],
        "zones": lab.zones,
        "parent": {"nameserver": lab.parent.nameserver, "api_url": lab.parent.api_url},
        "parent_agent_config": str(lab.parent_agent_config),
        "parent_agent_log": str(lab.parent_agent_log),
    }
    if isinstance(lab, Model1Lab):
        info["model"] = 1
        info["providers"] = [
            {
                "name": k.name,
                "type": "knot",
                "nameserver": k.nameserver,
                "ns_name": k.ns_name,
                "knot_config": str(k.conf_path),
            }
            for k in lab.providers
        ]
        info["owner_ksk"] = {
            "store": lab.store,
            "keys": {z: lab.owner_ksk(z)[1] for z in lab.zones},
        }
    else:
        info["model"] = 2
        info["providers"] = [
            {
                "name": p.name,
                "nameserver": p.nameserver,
                "ns_name": p.ns_name,
                "api_url": p.api_url,
            }
            for p in lab.providers
        ]
    resolver: tuple[str, int] | None
    try:
        resolver = lab.resolver
    except LabError:
        resolver = None
    info["resolver"] = f"{resolver[0]}:{resolver[1]}" if resolver else None
    zone = lab.zones[0]
    usage = [
        f"export MULTISIGNER_CONFIG={lab.config_path}",
        "multisigner check",
        "multisigner sync --all",
        f"multisigner status {zone}",
    ]
    if resolver:
        usage.append(f"dig @{resolver[0]} -p {resolver[1]} +dnssec www.{zone} A")
    if lab.parent_agent_config.exists():  # not in a lab started without the agent
        usage.append(f"multisigner --config {lab.parent_agent_config} history test.")
    usage.append(f"multisigner lab down {lab.directory}")
    info["usage"] = usage
    return info


def format_info(info: dict[str, Any]) -> str:
    """``lab_info`` for a human: where the config is and how to use the lab."""
    lines = [
        f"lab in {info['directory']} ({'running' if info['running'] else 'stopped'})",
        f"config:   {info['config']}",
        f"resolver: {info['resolver'] or '(none)'}  parent: {info['parent']['nameserver']}",
    ]
    lines += [
        f"  {p['name']}: {p['ns_name']} {p['nameserver']}  "
        + (f"api {p['api_url']}" if "api_url" in p else f"knot -c {p['knot_config']}")
        for p in info["providers"]
    ]
    lines.append(f"zones: {', '.join(info['zones'])}")
    lines.append("try:")
    lines += [f"  {u}" for u in info["usage"]]
    return "\n".join(lines)
