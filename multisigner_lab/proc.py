"""Lab server processes: start detached, wait until they answer, stop by process group.

Each server runs in its own session (so its own process group): a Ctrl-C in a test run does
not hit it half-way, and stopping the group also stops anything it forked. What is needed
to stop it later — pid, pgid and the kernel's start time of the pid — is plain data
(:meth:`Proc.to_json`), so a lab started by one Python process (``multisigner lab up``)
can be stopped by another (``lab down``) from the lab's JSON state file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import orchestrator
from core.errors import ObservationError
from multisigner_lab import dnsq
from multisigner_lab.errors import LabError

STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
_POLL = 0.02


@dataclass
class Proc:
    """A server process of the lab (ours, or one recorded by another process)."""

    name: str
    pid: int
    pgid: int
    directory: Path
    log: Path
    start_time: int | None = None  # /proc/PID/stat field 22: tells a reused pid apart
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "pgid": self.pgid,
            "dir": str(self.directory),
            "log": str(self.log),
            "start_time": self.start_time,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Proc:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            directory=Path(data["dir"]),
            log=Path(data["log"]),
            start_time=data.get("start_time"),
        )

    def alive(self) -> bool:
        """True while any process of its group runs (zombies count as gone)."""
        self._reap()
        return bool(_group_members(self.pgid))

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _reap(self) -> None:
        # Our own children stay zombies (and look alive to kill(pid, 0)) until waited for.
        if self.popen is not None:
            self.popen.poll()


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def start_time_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None  # field 22 overall, 20 after "pid (comm)"


def _group_members(pgid: int) -> list[int]:
    """Non-zombie processes whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def spawn(
    name: str,
    argv: list[str],
    directory: Path,
    *,
    log_name: str = "server.log",
    env: Mapping[str, str] | None = None,
) -> Proc:
    """Start ``argv`` in ``directory`` as the leader of a new session; stdout and stderr go
    to ``directory/log_name`` (appended: a retried start keeps the earlier attempt's log)."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / log_name
    with log.open("ab") as out:
        try:
            popen = subprocess.Popen(
                argv,
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
            )
        except OSError as exc:
            raise LabError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    return Proc(name, popen.pid, popen.pid, directory, log, start_time_of(popen.pid), popen)


def wait_ready(proc: Proc, probe: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``probe`` until it returns True; raise with the log tail if the process dies or
    the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.popen is not None and proc.popen.poll() is not None:
            raise LabError(
                f"{proc.name} exited with code {proc.popen.returncode} while starting;"
                f" log {proc.log}:\n{proc.log_tail()}"
            )
        try:
            if probe():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LabError(
                f"{proc.name} not ready after {timeout:.0f} s; log {proc.log}:\n{proc.log_tail()}"
            )
        time.sleep(_POLL)


def stop(proc: Proc, grace: float = STOP_GRACE) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds; wait until gone."""
    current = start_time_of(proc.pid)
    if proc.start_time is not None and current is not None and current != proc.start_time:
        # The pid now belongs to another process, so the group we started is long gone
        # (Linux never hands out a pid still in use as a process group id).
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pgid, sig)
        except ProcessLookupError:
            proc._reap()
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not proc.alive():
                return
            time.sleep(_POLL)
    raise LabError(f"{proc.name} (pgid {proc.pgid}) survived SIGKILL")


def stop_all(procs: Iterable[Proc]) -> None:
    """Stop several processes concurrently (each may take up to the grace period)."""
    todo = list(procs)
    if not todo:
        return
    errors: list[str] = []
    with ThreadPoolExecutor(len(todo)) as pool:
        for p, fut in [(p, pool.submit(stop, p)) for p in todo]:
            try:
                fut.result()
            except (LabError, OSError) as exc:
                errors.append(f"{p.name}: {exc}")
    if errors:
        raise LabError("could not stop: " + "; ".join(errors))


# Readiness probes: each returns True once the server answers.


def tcp_probe(address: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection((address, port), timeout=0.5):
            return True

    return probe


def run_tool(
    argv: list[str],
    what: str,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run a command-line tool to its end; its stdout. A failure (cannot start, timeout,
    non-zero exit) is a LabError that starts with ``what`` and ends with the tool's
    stderr (or stdout), whose last lines say why."""
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise LabError(
            f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}"
        )
    return done.stdout


def dns_probe(address: str, port: int, qname: str = ".") -> Callable[[], bool]:
    """Any DNS answer counts (REFUSED included): the server is listening and parsing."""
    def probe() -> bool:
        try:
            dnsq.query(address, port, qname, "SOA", timeout=0.3)
        except ObservationError:
            return False
        return True

    return probe


def http_probe(url: str, headers: Mapping[str, str] | None = None) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, headers=dict(headers or {}), timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def all_of(*probes: Callable[[], bool]) -> Callable[[], bool]:
    return lambda: all(p() for p in probes)


def child_env() -> dict[str, str]:
    """This environment, with ``orchestrator``'s checkout first on ``PYTHONPATH``: for
    ``python -m orchestrator...`` child processes."""
    root = str(Path(orchestrator.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env
