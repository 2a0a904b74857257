"""Files the lab writes: ``multisigner.toml`` (interface.md format) and ``lab.json``.

Both hold API keys, so both are written 0600, atomically (temp file + rename) so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
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


def _q(value: str) -> str:
    """A TOML basic string: JSON string escaping is valid TOML for these values."""
    return json.dumps(value)


def _qlist(values: Sequence[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def config_toml(
    directory: Path,
    providers: Sequence[dict[str, Any]],
    zones: Sequence[str],
    parent_nameserver: str,
    *,
    signers: Sequence[str] | None = None,
) -> str:
    """The controller config for the lab: every provider is listed, the ``signers`` of
    every zone (default: all providers) sign it (Model 2), the parent is the lab's CDS
    scanner. ``propagation_delay`` is 0 s because the lab has no secondaries: what the
    nameservers serve *is* propagated."""
    zone_signers = [p["name"] for p in providers] if signers is None else list(signers)
    out = [
        "# Written by the multisigner lab; API keys are literal (this file is 0600).",
        "[state]",
        f"url = {_q('sqlite:///' + str(directory / 'multisigner.db'))}",
        "",
    ]
    for p in providers:
        nameserver = f"{p['address']}:{p['dns_port']}"
        out += [
            "[[providers]]",
            f"name = {_q(p['name'])}",
            'type = "powerdns"',
            f"api_url = {_q(p['api_url'])}",
            f"api_key = {_q(p['api_key'])}",
            'server_id = "localhost"',
            f"nameservers = {_qlist([nameserver])}",
            f"ns_names = {_qlist([p['ns_name']])}",
            "",
        ]
    for zone in zones:
        out += [
            "[[zones]]",
            f"name = {_q(zone)}",
            "model = 2",
            f"signers = {_qlist(zone_signers)}",
            "",
            "[zones.parent]",
            'type = "cds-scan"',
            f"nameservers = {_qlist([parent_nameserver])}",
            "",
            "[zones.policy]",
            'propagation_delay = "0s"',
            'safety_margin = "1s"',
            "",
        ]
    return "\n".join(out)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    write_private(directory / STATE_NAME, json.dumps(state, indent=2) + "\n")


def read_state(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / STATE_NAME).read_text())
    return data
