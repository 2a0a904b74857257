"""The Model 2 lab: a signed parent ``test.``, N PowerDNS providers serving the child
zones, the parent's CDS/CSYNC automation (the product's parent agent), and a validating
Unbound — all on random loopback addresses in one directory, all stopped by :meth:`Lab.stop`.

The zones start "multi-provider but not yet synchronised": every provider signs with its
own keys (none imported anywhere), the parent's DS names every
delegated provider's KSK, so every delegated server validates (without the parent agent,
``scanner=False``: p0's KSK only).

With ``delegated=[...]`` only those providers are in the delegation (the parent's NS RRset
and every provider's apex NS RRset) and in the zones' ``signers``; the others serve the
zone signed with their own keys, ready to join (``multisigner signer add``). The parent
agent follows CDS and CSYNC (RFC 7477) as a registry would; see
:mod:`multisigner_lab.parent_automation`.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from functools import partial
from pathlib import Path

import httpx

from multisigner_lab import config, powerdns, provision, zones
from multisigner_lab.base import LabBase, check_delegated
from multisigner_lab.errors import LabError
from multisigner_lab.server import Server

DEFAULT_ZONES = ("example.test.",)

__all__ = ["DEFAULT_ZONES", "Lab"]


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
        dnskey_ttl: int | None = None,
    ) -> Lab:
        """Start a lab in ``directory`` (created if missing). On any failure, whatever
        was already started is stopped before the error propagates.

        ``delegated``: the providers the zones are delegated to at first (default: all);
        must include ``p0``, whose KSK the parent's initial DS names.

        TTLs: ``ttl`` every RRset of the child zones (the SOA's own included) and of the
        parent, ``dnskey_ttl`` the children's DNSKEY RRsets (default ``ttl``; it is their
        SOA minimum, see :mod:`multisigner_lab.zones`), ``ds_ttl`` the parent's DS RRsets,
        ``ns_ttl`` the parent's NS RRsets for the children (default ``ttl``).

        ``scanner``: whether the parent agent runs (:mod:`multisigner_lab.parent_automation`;
        ``scanner_interval``: its scan interval). With it the parent's first DS RRset
        names the KSK of every delegated provider, not p0's only: the agent validates
        every delegated server's DNSKEY RRset against the DS, and a provider whose keys
        the DS does not name would be bogus (its CDS never accepted). Without it the
        parent changes only when a test changes it, and its first DS names p0's KSK."""
        if providers < 1:
            raise LabError("a lab needs at least one provider")
        initial = check_delegated([f"p{i}" for i in range(providers)], delegated, "p0")
        lab, zone_names = cls._new(directory, zones)
        settings = {
            "ttl": ttl,
            "ds_ttl": ds_ttl,
            "ns_ttl": ttl if ns_ttl is None else ns_ttl,
            "dnskey_ttl": ttl if dnskey_ttl is None else dnskey_ttl,
            "delegated": initial,  # at start; lab.delegated(zone) asks the parent
            "zones": zone_names,
            "scanner_interval": scanner_interval,
        }

        def build() -> None:
            lab._build(providers, algorithms or {}, set(csk),
                       all_ds=scanner)
            lab._start_services(agent=scanner, unbound=unbound)

        return lab._build_or_stop(build, settings)

    def _build(self, n: int, algorithms: dict[str, str], csk: set[str], *, all_ds: bool) -> None:
        names = ["parent"] + [f"p{i}" for i in range(n)]
        servers = self._concurrently([partial(self._start_powerdns, m) for m in names])
        parent, providers = servers[0], servers[1:]
        delegated = self.state["delegated"]
        keys = provision.provision_children(
            providers, self.zones, self.ttl, algorithms, csk, delegated=delegated,
            dnskey_ttl=self.dnskey_ttl,
        )
        # Every delegated provider's KSK (each delegated server's DNSKEY RRset then chains
        # to the DS, as the parent agent requires; see start()); without all_ds p0's only,
        # as if single-signed at p0 before going multi-signer.
        ds_from = delegated if all_ds else ["p0"]
        ds = {z: sorted({k.ds(z) for name in ds_from
                         for k in provision.signing_keys(keys[(name, z)])}) for z in self.zones}
        self._provision_parent(parent, {p.name: p.address for p in providers}, ds)
        self.state["providers"] = [
            {
                **p.to_json(),
                "ns_name": zones.ns_name(p.name),
                "algorithm": algorithms.get(p.name, provision.DEFAULT_ALGORITHM),
                "csk": p.name in csk,
            }
            for p in providers
        ]
        self._save()
        config.write_private(
            self.config_path,
            config.config_toml(
                self.directory,
                self.state["providers"],
                self.zones,
                self.parent.nameserver,
                signers=delegated,
            ),
        )

    # ----------------------------------------------------------------- what tests use

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
        """A bare API client for provider ``name`` (or ``"parent"``), for tests that act
        as that provider's operator; base URL ``.../api/v1/servers/localhost``, API key
        set. The caller closes it."""
        s = self.server(name)
        return powerdns.test_client(s.api_url, s.api_key)

    def keys(self, name: str, zone: str) -> list[powerdns.CryptoKey]:
        """PowerDNS' own keys of ``zone`` at ``name``, read through the product's adapter."""
        s = self.server(name)

        async def read() -> list[powerdns.CryptoKey]:
            api = powerdns.adapter(s.name, s.api_url, s.api_key, s.nameserver)
            try:
                return await powerdns.keys(api, zone)
            finally:
                await api.aclose()

        return powerdns.call(read())
