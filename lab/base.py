"""What both local labs share: :class:`~lab.Lab` (PowerDNS providers) and
:class:`~lab.Model1Lab` (Knot providers, owner KSK).

Both run a signed PowerDNS parent ``test.``, the CDS/CSYNC scanner and a validating
Unbound, and record themselves in ``DIR/lab.json``; :class:`LabBase` has the life cycle
(stop, context manager, ``lab.json``), the starting of the scanner and Unbound, and what
tests read from either lab. Each lab starts its own servers (``start``/``_build``) and
says what its providers are (:attr:`LabBase.providers`).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import dns.name
import dns.rdataclass
import dns.rdatatype

import orchestrator
from lab import config, dnsq, powerdns, proc, zones
from lab.errors import LabError
from lab.server import Server
from lab.unbound import Unbound

SCANNER_LOG = "scanner.log"


class ProviderServer(Protocol):
    """What the shared code reads from a provider (:class:`Server`, ``KnotServer``)."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def dns_port(self) -> int: ...
    @property
    def ns_name(self) -> str: ...


P = TypeVar("P", bound=ProviderServer)


def child_env() -> dict[str, str]:
    """This environment, with ``orchestrator``'s checkout first on ``PYTHONPATH``: for
    ``python -m orchestrator...`` child processes."""
    root = str(Path(orchestrator.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


class LabBase(Generic[P]):
    """A running (or recorded) lab whose providers are ``P``s. Subclasses build it with
    ``start`` (or :meth:`load`) and define :attr:`providers`."""

    def __init__(self, directory: Path, state: dict[str, Any], procs: list[proc.Proc]) -> None:
        self.directory = directory
        self.state = state
        self.procs = procs
        self._lock = threading.Lock()  # procs and socket_dirs grow from worker threads

    # ----------------------------------------------------------------- life cycle

    def _add(self, *, process: proc.Proc | None = None, socket_dir: Path | None = None) -> None:
        with self._lock:
            if process is not None:
                self.procs.append(process)
            if socket_dir is not None:
                self.state["socket_dirs"].append(str(socket_dir))

    def _start_scanner(self) -> None:
        p = proc.spawn(
            "scanner",
            [sys.executable, "-m", "lab.scanner", str(self.directory)],
            self.directory / "scanner",
            env=child_env(),
        )
        self._add(process=p)
        log = self.scanner_log
        proc.wait_ready(p, lambda: log.exists() and "scanner started" in log.read_text())

    def _start_unbound(self) -> None:
        stubs: dict[str, list[tuple[str, int]]] = {
            zones.PARENT_ZONE: [(self.parent.address, self.parent.dns_port)]
        }
        # Every provider, delegated or not. Unbound cannot follow the parent's NS RRset
        # here: the servers listen on random ports and a delegation (NS name, glue) cannot
        # carry a port, so the stub names address@port itself -- and a static list cannot
        # follow CSYNC changes anyway. Listing every provider keeps one that is not (yet, or
        # no longer) delegated in the resolver's view too, as the tests' invariant watcher
        # checks every provider: an unsafe join/leave shows up as failures here.
        for z in self.zones:
            stubs[z] = [(p.address, p.dns_port) for p in self.providers]
        u = Unbound.start(self.directory / "unbound", self.trust_anchors, stubs)
        self._add(process=u.proc)
        self.state["resolver"] = u.to_json()
        u.wait_validating(zones.PARENT_ZONE)

    def _save(self) -> None:
        with self._lock:
            self.state["processes"] = [p.to_json() for p in self.procs]
            config.write_state(self.directory, self.state)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """The lab recorded in ``directory/lab.json`` (e.g. started by ``lab up`` in
        another process), to use or stop it."""
        directory = directory.resolve()
        try:
            state = config.read_state(directory)
        except (OSError, ValueError) as exc:
            raise LabError(f"no lab state in {directory}: {exc}") from exc
        cls._check_state(directory, state)
        return cls(directory, state, [proc.Proc.from_json(p) for p in state["processes"]])

    @classmethod
    def _check_state(cls, directory: Path, state: dict[str, Any]) -> None:
        """Hook for :meth:`load`: raise :class:`LabError` if ``state`` is not this kind of
        lab's. Any lab's is fine here."""

    def stop(self) -> None:
        """Stop every process (TERM, KILL after 3 s), concurrently; idempotent."""
        try:
            proc.stop_all(self.procs)
        finally:
            for socket_dir in self.state.get("socket_dirs", []):
                powerdns.remove_dir(Path(socket_dir))
            self.state["running"] = False
            if self.directory.exists():
                self._save()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def alive(self) -> list[str]:
        """Names of the lab's processes still running."""
        return [p.name for p in self.procs if p.alive()]

    # ----------------------------------------------------------------- what tests use

    @property
    def providers(self) -> list[P]:
        """The providers, in order (``p0``.. or ``k0``..)."""
        raise NotImplementedError

    @property
    def config_path(self) -> Path:
        return self.directory / config.CONFIG_NAME

    @property
    def state_path(self) -> Path:
        return self.directory / config.STATE_NAME

    @property
    def scanner_log(self) -> Path:
        return self.directory / SCANNER_LOG

    @property
    def zones(self) -> list[str]:
        return list(self.state["zones"])

    @property
    def ttl(self) -> int:
        return int(self.state["ttl"])

    @property
    def ds_ttl(self) -> int:
        return int(self.state["ds_ttl"])

    @property
    def ns_names(self) -> dict[str, str]:
        """Provider name -> its nameserver name (``{"p0": "ns1.p0.test.", ...}``; ``k0``..
        in a Model 1 lab)."""
        return {p.name: p.ns_name for p in self.providers}

    @property
    def parent(self) -> Server:
        return Server.from_json(self.state["parent"])

    @property
    def trust_anchors(self) -> list[str]:
        """The parent zone's KSK DNSKEY texts (``257 3 13 base64``)."""
        return list(self.state["parent"]["trust_anchor"])

    @property
    def resolver(self) -> tuple[str, int]:
        """Unbound's (address, port)."""
        r = self.state.get("resolver")
        if not r:
            raise LabError(f"the lab in {self.directory} runs no resolver (unbound=False)")
        return str(r["address"]), int(r["port"])

    def parent_ds(self, zone: str) -> list[str]:
        """The DS records the parent serves now (one-token digest, lowercase hex)."""
        p = self.parent
        resp = dnsq.query(p.address, p.dns_port, zone, "DS")
        rrset = dnsq.answer(resp, zone, "DS")
        return sorted(
            f"{rd.key_tag} {rd.algorithm} {rd.digest_type} {rd.digest.hex()}"
            for rd in (rrset or [])
        )

    def parent_ns(self, zone: str) -> list[str]:
        """The NS names the parent serves for ``zone`` now, sorted (read by DNS: the NS
        RRset in the authority section of the parent's referral)."""
        p = self.parent
        resp = dnsq.query(p.address, p.dns_port, zone, "NS", dnssec=False)
        name = dns.name.from_text(zone)
        for section in (resp.authority, resp.answer):
            rrset = resp.get_rrset(section, name, dns.rdataclass.IN, dns.rdatatype.NS)
            if rrset is not None:
                return sorted({rd.target.to_text().lower() for rd in rrset})
        return []

    def delegated(self, zone: str) -> list[str]:
        """The providers ``zone`` is delegated to now (from :meth:`parent_ns`), in
        provider order; NS names of no provider are left out."""
        served = set(self.parent_ns(zone))
        return [p.name for p in self.providers if p.ns_name.lower() in served]

    def dnsviz_probe_args(self, zone: str) -> list[str]:
        """Arguments after ``dnsviz`` for an authoritative probe of ``zone`` with the
        parent's *current* DS and NS (docs/lab-notes.md recipe; the providers it is
        delegated to now, all if none); pipe to ``dnsviz grok``."""
        name = zone.rstrip(".")
        now = set(self.delegated(zone))
        chosen = [p for p in self.providers if p.name in now] or self.providers
        servers = ",".join(f"{p.ns_name}={p.address}:{p.dns_port}" for p in chosen)
        args = ["probe", "-A", "-x", f"{name}:{servers}", "-N", f"{name}:{servers}"]
        ds = self.parent_ds(zone)
        if ds:
            args += ["-D", f"{name}:" + ",".join(ds)]
        return [*args, name, f"www.{name}"]
