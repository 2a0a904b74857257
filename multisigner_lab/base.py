"""What both local labs share: :class:`~lab.Lab` (PowerDNS providers) and
:class:`~lab.Model1Lab` (Knot providers, owner KSK).

Both run a signed PowerDNS parent ``test.``, its CDS/CSYNC automation
(:mod:`multisigner_lab.parent_automation`: the product's parent agent) and a validating
Unbound, and record themselves in ``DIR/lab.json``. :class:`LabBase` is the one builder
around them: the start-up frame (directory, refusing a second lab, stopping what started
when a step fails), starting servers concurrently, the parent zone with its delegations
and DS, the parent's automation and Unbound, the life cycle (stop, context manager,
``lab.json``) and what tests read from either lab. Each lab adds its providers
(``_build``) and says what they are (:attr:`LabBase.providers`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import dns.name
import dns.rdataclass
import dns.rdatatype
import httpx

from multisigner_lab import config, dnsq, parent_automation, powerdns, proc, provision, zones
from multisigner_lab.errors import LabError
from multisigner_lab.server import Endpoint, Server
from multisigner_lab.unbound import Unbound

P = TypeVar("P", bound=Endpoint)  # Server (PowerDNS) or KnotServer


def fqdn(zone: str) -> str:
    return zone if zone.endswith(".") else zone + "."


def check_delegated(names: list[str], delegated: Sequence[str] | None, need: str) -> list[str]:
    """``delegated`` (default: all ``names``) checked and in provider order; ``need``: a
    provider every delegation must include (the one whose KSK the parent's first DS
    names), or "" when any non-empty subset will do."""
    if delegated is None:
        return names
    if isinstance(delegated, str):
        raise LabError(f"delegated must be a list of provider names, not {delegated!r}")
    if unknown := sorted(set(delegated) - set(names)):
        raise LabError(f"delegated names unknown providers {unknown} (have {names})")
    if need and need not in delegated:
        raise LabError(f"delegated must include {need}: the parent's initial DS is its KSK")
    if not delegated:
        raise LabError("delegated must name at least one provider: a zone needs a delegation")
    return [n for n in names if n in delegated]


class LabBase(parent_automation.ParentAutomation, Generic[P]):
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

    @classmethod
    def _new(
        cls, directory: Path, zone_list: Sequence[str], **state: Any
    ) -> tuple[Self, list[str]]:
        """A lab object for ``directory`` (created if missing; refused while another lab
        runs there) and the zone names as FQDNs."""
        if isinstance(zone_list, str):
            raise LabError(f"zones must be a list of zone names, not {zone_list!r}")
        zone_names = [fqdn(z) for z in zone_list]
        if not zone_names:
            raise LabError("a lab needs at least one zone")
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        _refuse_running(directory)
        initial = {"running": True, "processes": [], "socket_dirs": [], **state}
        return cls(directory, initial, []), zone_names

    def _build_or_stop(self, build: Callable[[], None], settings: dict[str, Any]) -> Self:
        """Record ``settings`` and run ``build``; on any failure stop whatever was
        already started before the error propagates."""
        started = time.monotonic()
        self.state.update({"directory": str(self.directory), **settings, "resolver": None})
        try:
            build()
            self.state["startup_seconds"] = round(time.monotonic() - started, 3)
            self._save()
        except BaseException:
            with contextlib.suppress(LabError):  # the original error matters more
                self.stop()
            raise
        return self

    def _concurrently(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run ``jobs`` at once; their results in order. Every job runs to its end (each
        registers what it started, so stop() finds it), then the first failure raises."""
        results: list[Any] = []
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max(1, len(jobs))) as pool:
            for fut in [pool.submit(job) for job in jobs]:
                try:
                    results.append(fut.result())
                except Exception as exc:
                    results.append(None)
                    errors.append(exc)
        self._save()  # pids on disk as early as possible
        if errors:
            raise errors[0]
        return results

    def _start_powerdns(self, name: str) -> powerdns.PowerDNS:
        """A PowerDNS server in ``DIR/name``, registered for stop()."""
        server = powerdns.PowerDNS.start(name, self.directory / name)
        self._add(process=server.proc)
        if server.socket_dir != server.directory:  # long lab path: removed on stop
            self._add(socket_dir=server.socket_dir)
        return server

    def _provision_parent(
        self, server: powerdns.PowerDNS, glue: Mapping[str, str], ds: Mapping[str, list[str]]
    ) -> None:
        """The parent zone ``test.`` at ``server``: the children delegated to the lab's
        initial providers with DS ``ds``; ``glue``: every provider's address by name."""
        keys = provision.provision_parent(
            server,
            glue,
            self.zones,
            ds,
            delegated=self.state["delegated"],
            ttl=self.ttl,
            ds_ttl=self.ds_ttl,
            ns_ttl=int(self.state["ns_ttl"]),
        )
        self.state["parent"] = {
            **server.to_json(),
            "ns_name": zones.PARENT_NS,
            "trust_anchor": [k.dnskey for k in provision.signing_keys(keys)],
        }
        self._save()

    def _start_services(self, *, agent: bool, unbound: bool) -> None:
        """The parent agent and Unbound, at once; the config and lab.json must be
        written."""
        jobs = [self.start_parent_automation] if agent else []
        jobs += [self._start_unbound] if unbound else []
        self._concurrently(jobs)

    def register_ds(self, zone: str, ds: Sequence[str]) -> None:
        """Set ``zone``'s DS RRset at the parent (TTL ``ds_ttl``) as its owner would at
        the registry: the agent bootstraps no DS from CDS. ``ds``: ``tag alg type hex``."""
        with self.parent_pdns_api() as api:
            powerdns.set_rrset(api, zones.PARENT_ZONE, fqdn(zone), "DS", ttl=self.ds_ttl,
                               contents=list(ds))

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
    def zones(self) -> list[str]:
        return list(self.state["zones"])

    @property
    def ttl(self) -> int:
        """The data TTL: every RRset of the child zones but the DNSKEY RRset (the SOA's own
        TTL included), and of the parent but its DS and the children's NS RRsets."""
        return int(self.state["ttl"])

    @property
    def dnskey_ttl(self) -> int:
        """TTL of the child zones' DNSKEY RRsets (old state files: the TTL)."""
        return int(self.state.get("dnskey_ttl", self.state["ttl"]))

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

    @property
    def ns_ttl(self) -> int:
        """TTL of the parent's NS RRsets for the children (old state files: the TTL)."""
        return int(self.state.get("ns_ttl", self.state["ttl"]))

    @property
    def initially_delegated(self) -> list[str]:
        """The providers the zones were delegated to (and signed by) at start (old state
        files: every provider); :meth:`delegated` asks the parent what it is now."""
        names = self.state.get("delegated")
        return list(names) if names is not None else [p.name for p in self.providers]

    def parent_pdns_api(self) -> httpx.Client:
        """A bare API client for the parent (``.../servers/localhost``) for tests that
        act as the registry's operator; the caller closes it."""
        p = self.parent
        return powerdns.test_client(p.api_url, p.api_key)

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
        resp = dnsq.query(p.address, p.dns_port, zone, "NS")
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
        parent's *current* DS and NS (recipe in docs/lab.md; the providers it is
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


def _refuse_running(directory: Path) -> None:
    """Two labs in one directory would overwrite each other's state and leak servers."""
    if not (directory / config.STATE_NAME).exists():
        return
    try:
        old: LabBase[Any] = LabBase.load(directory)
    except LabError:
        return
    if alive := old.alive():
        raise LabError(f"a lab already runs in {directory} ({', '.join(alive)}); stop it first")
