"""Run DNSViz on a lab zone as an independent check (recipe in docs/lab.md).

With ``-N``/``-D`` DNSViz serves the delegation it was given from a BIND ``named`` it starts
itself on 127.0.0.1 from a *fixed* port (50053 up), so it needs ``named`` and
``named-checkconf`` (Debian: bind9, bind9-utils) and two probes at once collide: probes
are serialised across processes (pytest-xdist workers) with a lock file.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multisigner_lab.errors import LabError

if TYPE_CHECKING:
    from multisigner_lab.lab import Lab

LOCK = Path(tempfile.gettempdir()) / "multisigner-dnsviz.lock"


def executable() -> str | None:
    """The dnsviz command: next to this Python (the venv) or on PATH."""
    beside = Path(sys.executable).parent / "dnsviz"
    return str(beside) if beside.exists() else shutil.which("dnsviz")


def missing() -> str | None:
    """Why a DNSViz check cannot run here, or None when it can."""
    if executable() is None:
        return "dnsviz is not installed"
    for tool in ("named", "named-checkconf"):
        if shutil.which(tool, path=f"/usr/sbin:/sbin:{_path()}") is None:
            return f"dnsviz -N/-D needs {tool} (bind9/bind9-utils)"
    return None


def _path() -> str:
    return os.environ.get("PATH", "")


def grok(lab: Lab, zone: str, level: str = "warning", timeout: float = 120) -> dict[str, Any]:
    """Probe ``zone`` and return ``dnsviz grok -l LEVEL``'s findings ({} when clean)."""
    cmd = executable()
    if cmd is None or (why := missing()):
        raise LabError(f"cannot run DNSViz: {why or 'not installed'}")
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = subprocess.run(
            [cmd, *lab.dnsviz_probe_args(zone)], capture_output=True, timeout=timeout, check=False
        )
    if probe.returncode != 0:
        raise LabError(f"dnsviz probe {zone} failed: {probe.stderr.decode(errors='replace')}")
    out = subprocess.run(
        [cmd, "grok", "-l", level],
        input=probe.stdout,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise LabError(f"dnsviz grok {zone} failed: {out.stderr.decode(errors='replace')}")
    text = out.stdout.decode().strip()
    result: dict[str, Any] = json.loads(text) if text else {}
    return result
