"""Files the lab writes: ``multisigner.toml`` (the controller config, docs/configuration.md)
and ``lab.json`` (the lab's own record: servers, processes, zones).

Both hold API keys, so both are written 0600, atomically (temp file + rename) so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

CONFIG_NAME = "multisigner.toml"
STATE_NAME = "lab.json"


def write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def toml_str(value: str) -> str:
    """A TOML basic string: JSON string escaping is valid TOML for these values."""
    return json.dumps(value)


def toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


# The controller's policy in the lab. ``propagation_delay`` is 0 s because the lab has no
# secondaries: what the nameservers serve *is* propagated. Model 1 adds short-lived owner
# signatures so that re-signing shows within a test.
POLICY = {"propagation_delay": "0s", "safety_margin": "1s"}
MODEL1_POLICY = {**POLICY, "signature_validity": "60s", "signature_refresh": "30s"}


def provider_toml(p: Mapping[str, Any]) -> list[str]:
    """One ``[[providers]]`` table from the provider's entry in ``lab.json``."""
    q, qlist = toml_str, toml_list
    out = ["[[providers]]", f"name = {q(p['name'])}"]
    if p.get("type") == "knot":
        out += ['type = "knot"', f"knot_config = {q(str(p['conf']))}"]
    else:
        out += [
            'type = "powerdns"',
            f"api_url = {q(p['api_url'])}",
            f"api_key = {q(p['api_key'])}",
            'server_id = "localhost"',
        ]
    nameserver = f"{p['address']}:{p['dns_port']}"
    return [*out, f"nameservers = {qlist([nameserver])}", f"ns_names = {qlist([p['ns_name']])}", ""]


def config_toml(
    directory: Path,
    providers: Sequence[Mapping[str, Any]],
    zones: Sequence[str],
    parent_nameserver: str,
    *,
    signers: Sequence[str] | None = None,
    owner_ksk: Callable[[int, str], list[str]] | None = None,
) -> str:
    """The controller config for the lab: every provider is listed, the ``signers`` of
    every zone (default: all providers) sign it, the parent is run by the lab's parent agent.
    With ``owner_ksk`` (the ``[zones.owner_ksk]`` lines of the i-th zone) the zones are
    Model 1, else Model 2."""
    q, qlist = toml_str, toml_list
    zone_signers = [p["name"] for p in providers] if signers is None else list(signers)
    out = [
        "# Written by the multisigner lab; secrets are literal (this file is 0600).",
        "[state]",
        f"url = {q('sqlite:///' + str(directory / 'multisigner.db'))}",
        "",
    ]
    for p in providers:
        out += provider_toml(p)
    policy = POLICY if owner_ksk is None else MODEL1_POLICY
    for index, zone in enumerate(zones):
        out += [
            "[[zones]]",
            f"name = {q(zone)}",
            f"model = {2 if owner_ksk is None else 1}",
            f"signers = {qlist(zone_signers)}",
            "",
            "[zones.parent]",
            'type = "cds-scan"',
            f"nameservers = {qlist([parent_nameserver])}",
            "",
        ]
        if owner_ksk is not None:
            out += ["[zones.owner_ksk]", *owner_ksk(index, zone), ""]
        out += ["[zones.policy]", *(f"{k} = {q(v)}" for k, v in policy.items()), ""]
    return "\n".join(out)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    write_private(directory / STATE_NAME, json.dumps(state, indent=2) + "\n")


def read_state(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / STATE_NAME).read_text())
    return data
