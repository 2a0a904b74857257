"""The local lab: a signed parent ``test.``, N PowerDNS providers serving the child
zones, a CDS-scanning registry, and a validating Unbound — all on random loopback
addresses in one directory, all stopped by :meth:`Lab.stop`.

The zones start in the state "single-signed at p0, other providers added but not yet
synchronised": every provider signs with its own keys, the parent's DS names p0's KSK only.

With ``delegated=[...]`` only those providers are in the delegation (the parent's NS RRset
and every provider's apex NS RRset) and in the zones' ``signers``; the others serve the
zone signed with their own keys, ready to join (design.md sec. 4, "Add / remove a signer").
The scanner follows CSYNC (RFC 7477) for NS as a registry would; see
:mod:`lab.scanner`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from lab import config, powerdns, provision, zones
from lab.base import SCANNER_LOG, LabBase
from lab.errors import LabError
from lab.server import Server

DEFAULT_ZONES = ("example.test.",)

__all__ = ["DEFAULT_ZONES", "SCANNER_LOG", "Lab"]  # SCANNER_LOG: lives in base.py now


class Lab(LabBase[Server]):
    """A running (or recorded) lab. Build with :meth:`start` or :meth:`load`."""

    # ----------------------------------------------------------------- life cycle

    @classmethod
    def start(
        cls,
        directory: Path,
        providers: int = 3,
        zones: Sequence[str] = DEFAULT_ZONES,
        ttl: int = 2,
        *,
        ds_ttl: int = 2,
        algorithms: dict[str, str] | None = None,
        csk: Set[str] = frozenset(),
        scanner: bool = True,
        unbound: bool = True,
        scanner_interval: float = 0.5,
        delegated: Sequence[str] | None = None,
        ns_ttl: int | None = None,
    ) -> Lab:
        """Start a lab in ``directory`` (created if missing). On any failure, whatever
        was already started is stopped before the error propagates.

        ``delegated``: the providers the zones are delegated to at first (default: all);
        must include ``p0``, whose KSK the parent's initial DS names. ``ns_ttl``: TTL of
        the parent's NS RRsets for the children (default: ``ttl``)."""
        if providers < 1:
            raise LabError("a lab needs at least one provider")
        initial = _delegated_names(providers, delegated)
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        _refuse_running(directory)
        zone_names = [z if z.endswith(".") else z + "." for z in zones]
        lab = cls(directory, {"running": True, "processes": []}, [])
        try:
            lab._build(
                zone_names=zone_names,
                n=providers,
                ttl=ttl,
                ds_ttl=ds_ttl,
                algorithms=algorithms or {},
                csk=set(csk),
                want_scanner=scanner,
                want_unbound=unbound,
                interval=scanner_interval,
                delegated=initial,
                ns_ttl=ttl if ns_ttl is None else ns_ttl,
            )
        except BaseException:
            with contextlib.suppress(LabError):  # the original error matters more
                lab.stop()
            raise
        return lab

    def _build(
        self,
        *,
        zone_names: list[str],
        n: int,
        ttl: int,
        ds_ttl: int,
        algorithms: dict[str, str],
        csk: set[str],
        want_scanner: bool,
        want_unbound: bool,
        interval: float,
        delegated: list[str],
        ns_ttl: int,
    ) -> None:
        started = time.monotonic()
        names = ["parent"] + [f"p{i}" for i in range(n)]
        with ThreadPoolExecutor(len(names)) as pool:
            futures = [pool.submit(powerdns.PowerDNS.start, m, self.directory / m) for m in names]
            servers: list[powerdns.PowerDNS] = []
            errors: list[BaseException] = []
            for fut in futures:
                try:
                    servers.append(fut.result())
                except Exception as exc:
                    errors.append(exc)
        self.procs += [s.proc for s in servers]
        # out-of-tree socket dirs (long lab paths) to remove on stop, even after a failure
        self.state["socket_dirs"] = [
            str(s.socket_dir) for s in servers if s.socket_dir != s.directory
        ]
        self._save()  # pids on disk as early as possible
        if errors:
            raise errors[0]
        parent, providers = servers[0], servers[1:]

        keys = provision.provision_children(
            providers, zone_names, ttl, algorithms, csk, delegated=delegated
        )
        # Single-signed at p0 before going multi-signer: the parent knows p0's KSK only.
        ds = {z: [k.ds(z) for k in provision.signing_keys(keys[("p0", z)])] for z in zone_names}
        parent_keys = provision.provision_parent(
            parent,
            providers,
            zone_names,
            ds,
            ttl=ttl,
            ds_ttl=ds_ttl,
            ns_ttl=ns_ttl,
            delegated=delegated,
        )
        self.state.update(
            {
                "directory": str(self.directory),
                "ttl": ttl,
                "ds_ttl": ds_ttl,
                "ns_ttl": ns_ttl,
                "delegated": delegated,  # at start; lab.delegated(zone) asks the parent
                "zones": zone_names,
                "scanner_interval": interval,
                "parent": {
                    **parent.to_json(),
                    "ns_name": zones.PARENT_NS,
                    "trust_anchor": [k.dnskey for k in provision.signing_keys(parent_keys)],
                },
                "providers": [
                    {
                        **p.to_json(),
                        "ns_name": zones.ns_name(p.name),
                        "algorithm": algorithms.get(p.name, provision.DEFAULT_ALGORITHM),
                        "csk": p.name in csk,
                    }
                    for p in providers
                ],
                "resolver": None,
            }
        )
        self._save()
        config.write_private(
            self.config_path,
            config.config_toml(
                self.directory,
                self.state["providers"],
                zone_names,
                self.parent.nameserver,
                signers=delegated,
            ),
        )
        with ThreadPoolExecutor(2) as pool:
            scan = pool.submit(self._start_scanner) if want_scanner else None
            unb = pool.submit(self._start_unbound) if want_unbound else None
            failures = [f.exception() for f in (scan, unb) if f is not None]
        self._save()
        for failure in failures:
            if failure is not None:
                raise failure
        self.state["startup_seconds"] = round(time.monotonic() - started, 3)
        self._save()

    # ----------------------------------------------------------------- what tests use

    @property
    def ns_ttl(self) -> int:
        """TTL of the parent's NS RRsets for the children (old state files: the TTL)."""
        return int(self.state.get("ns_ttl", self.state["ttl"]))

    @property
    def providers(self) -> list[Server]:
        return [Server.from_json(p) for p in self.state["providers"]]

    def server(self, name: str) -> Server:
        """A provider by name, or ``"parent"``."""
        for s in [self.parent, *self.providers]:
            if s.name == name:
                return s
        raise LabError(f"no server {name!r} in the lab (have parent, p0..)")

    def pdns_api(self, name: str) -> httpx.Client:
        """An API client for provider ``name`` (or ``"parent"``); base URL
        ``.../api/v1/servers/localhost``, API key set. The caller closes it."""
        s = self.server(name)
        return powerdns.api_client(s.api_url, s.api_key)

    def keys(self, name: str, zone: str) -> list[powerdns.CryptoKey]:
        """PowerDNS' own keys of ``zone`` at ``name`` (read from its API)."""
        with self.pdns_api(name) as client:
            return powerdns.keys(client, zone)


def _delegated_names(providers: int, delegated: Sequence[str] | None) -> list[str]:
    """``delegated`` checked and in provider order (default: every provider)."""
    names = [f"p{i}" for i in range(providers)]
    if delegated is None:
        return names
    if isinstance(delegated, str):
        raise LabError(f"delegated must be a list of provider names, not {delegated!r}")
    if unknown := sorted(set(delegated) - set(names)):
        raise LabError(f"delegated names unknown providers {unknown} (have {names})")
    if "p0" not in delegated:
        raise LabError("delegated must include p0: the parent's initial DS is p0's KSK")
    return [n for n in names if n in delegated]


def _refuse_running(directory: Path) -> None:
    """Two labs in one directory would overwrite each other's state and leak servers."""
    if not (directory / config.STATE_NAME).exists():
        return
    try:
        old = Lab.load(directory)
    except LabError:
        return
    if alive := old.alive():
        raise LabError(f"a lab already runs in {directory} ({', '.join(alive)}); stop it first")
