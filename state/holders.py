"""Who holds a zone lease, and when a holder can really be known to be dead.

A holder id is ``HOST:PID:NONCE:PROOF``, made once per process:

* ``HOST:PID`` is what an operator reads in "zone X is being handled by ...";
* ``NONCE`` (random hex) makes it unique even where HOST:PID is not: two containers with
  the same hostname both run the controller as PID 1, and without the nonce they would
  both "hold" the same lease;
* ``PROOF`` is ``BOOT.PIDNS.START`` (kernel boot id, PID-namespace inode, process start
  time in clock ticks since boot), or ``-`` where /proc does not tell them.

A lease whose holder died is taken over before it expires only where that death is
certain: the same kernel (boot id) *and* the same PID namespace (so ``/proc/PID`` names the
same process), and that PID either no longer exists, is a zombie, or started at another
time (the PID was reused). Everywhere else (another host, another container, no /proc, an
id of an older version) the lease is simply waited out: judging a live controller dead
would put two controllers on one zone.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
UNKNOWN = "-"


@dataclass(frozen=True)
class Holder:
    """A parsed holder id."""

    host: str
    pid: int
    nonce: str
    boot: str | None
    pidns: int | None
    start: int | None

    @property
    def label(self) -> str:
        """The part an operator needs (the proof is for the dead-holder check)."""
        return f"{self.host}:{self.pid}:{self.nonce}"


_made: dict[int, str] = {}  # pid -> the id made in that process


def process_holder() -> str:
    """This process's holder id: made once, made again in a forked child (its PID and so
    its identity differ from the parent's)."""
    pid = os.getpid()
    if pid not in _made:
        _made.clear()  # a forked child's copy of its parent's
        _made[pid] = make_holder(pid)
    return _made[pid]


def make_holder(pid: int) -> str:
    proof = _proof(pid)
    return f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}:{proof}"


def parse_holder(holder: str) -> Holder | None:
    """The fields of a holder id; None for anything else (e.g. ``host:pid`` of an older
    version, or a name a test chose)."""
    parts = holder.rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    host, pid, nonce, proof = parts
    boot, pidns, start = None, None, None
    fields = proof.split(".")
    if proof != UNKNOWN:
        if len(fields) != 3 or not fields[1].isdigit() or not fields[2].isdigit():
            return None
        boot, pidns, start = fields[0], int(fields[1]), int(fields[2])
    return Holder(host, int(pid), nonce, boot, pidns, start)


def holder_label(holder: str) -> str:
    """``HOST:PID:NONCE`` for messages; any other holder string unchanged."""
    parsed = parse_holder(holder)
    return parsed.label if parsed is not None else holder


def holder_dead(holder: str) -> bool:
    """True only if *holder* is certainly no longer running (see the module docstring)."""
    them = parse_holder(holder)
    if them is None or them.boot is None or them.host != socket.gethostname():
        return False
    here = _proof(os.getpid())
    if here == UNKNOWN:
        return False
    boot, pidns, _start = here.split(".")
    if them.boot != boot or them.pidns != int(pidns):
        return False
    try:
        stat = _stat(them.pid)
    except (OSError, ValueError, IndexError):
        return False  # cannot tell: wait for the lease to expire
    if stat is None:
        return True  # no such process in this namespace
    state, start = stat
    return state in ("Z", "X") or start != them.start


def _proof(pid: int) -> str:
    """``BOOT.PIDNS.START`` of *pid*, or ``-`` if /proc cannot vouch for it."""
    try:
        boot = (PROC / "sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        pidns = os.stat(PROC / "self/ns/pid").st_ino
        # /proc may belong to another PID namespace (a host /proc mounted into a
        # container): then /proc/self is not us, and /proc/PID could be anyone.
        if int((PROC / "self/stat").read_text().split(" ", 1)[0]) != os.getpid():
            return UNKNOWN
        stat = _stat(pid)
    except (OSError, ValueError, IndexError):
        return UNKNOWN
    if stat is None or not boot.isalnum():
        return UNKNOWN
    return f"{boot[:16]}.{pidns}.{stat[1]}"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of *pid* from /proc/PID/stat; None if there is no such
    process. The command name (field 2) may contain spaces and parentheses, so the
    fields are counted after its last ')'."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None  # any other OSError (unreadable) reaches the caller: not "dead"
    rest = text[text.rindex(")") + 2:].split()
    return rest[0], int(rest[19])
