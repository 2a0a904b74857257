"""Putting the lab's zones and keys into its PowerDNS servers, concurrently.

Benchmarks use hundreds of zones × several providers; each zone costs a few API calls,
which PowerDNS serves in parallel, so running the (provider, zone) pairs concurrently
cuts the setup time several-fold. The calls go through the product's adapter, which
also throttles writes per server (SQLite backend: concurrent writers collide).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from multisigner_lab import powerdns, zones
from multisigner_lab.errors import LabError
from multisigner_lab.powerdns import CryptoKey, PowerDNS
from providers.powerdns import PowerDNSProvider

DEFAULT_ALGORITHM = "ECDSAP256SHA256"
_WORKERS = 8


def provision_children(
    servers: Sequence[PowerDNS],
    zone_names: Sequence[str],
    ttl: int,
    algorithms: Mapping[str, str],
    csk: frozenset[str] | set[str],
    *,
    delegated: Sequence[str] | None = None,
    dnskey_ttl: int | None = None,
) -> dict[tuple[str, str], list[CryptoKey]]:
    """Every child zone at every provider, identical content, each signed with the
    provider's own keys; the apex NS RRset names the ``delegated`` providers (default:
    all), at every provider. RRsets have TTL ``ttl``, the DNSKEY RRset ``dnskey_ttl``
    (default ``ttl``; PowerDNS serves it with the SOA minimum). Returns the keys by
    (provider, zone)."""
    names = [s.name for s in servers] if delegated is None else list(delegated)
    ns_names = [zones.ns_name(n) for n in names]

    async def all_zones() -> dict[tuple[str, str], list[CryptoKey]]:
        adapters = {s.name: s.adapter() for s in servers}
        slots = asyncio.Semaphore(_WORKERS)

        async def one(server: PowerDNS, zone: str) -> list[CryptoKey]:
            api = adapters[server.name]
            async with slots:
                rrsets = zones.child_rrsets(zone, ns_names, ttl, dnskey_ttl)
                await powerdns.create_zone(api, zone, rrsets)
                return await powerdns.add_keys(
                    api,
                    zone,
                    algorithms.get(server.name, DEFAULT_ALGORITHM),
                    csk=server.name in csk,
                )

        try:
            jobs = [(s, z) for s in servers for z in zone_names]
            found = await asyncio.gather(*(one(s, z) for s, z in jobs))
            return {(s.name, z): k for (s, z), k in zip(jobs, found, strict=True)}
        finally:
            await asyncio.gather(*(a.aclose() for a in adapters.values()))

    return powerdns.call(all_zones())


def signing_keys(keys: Sequence[CryptoKey]) -> list[CryptoKey]:
    """The keys that sign the DNSKEY RRset (KSK or CSK: flags 257, SEP bit)."""
    found = [k for k in keys if k.flags == 257 and k.active]
    if not found:
        raise LabError(f"no active KSK/CSK among {keys}")
    return found


def provision_parent(
    parent: PowerDNS,
    glue: Mapping[str, str],
    zone_names: Sequence[str],
    ds: Mapping[str, list[str]],
    *,
    delegated: Sequence[str],
    ttl: int,
    ds_ttl: int,
    ns_ttl: int | None = None,
) -> list[CryptoKey]:
    """The signed parent zone ``test.`` delegating every child to the ``delegated``
    providers, with the given DS RRsets; an A record for every provider's nameserver
    either way (``glue``: provider name -> address). Returns the parent's keys (its KSK is
    the resolver's trust anchor)."""
    hosts = {zones.ns_name(name): address for name, address in glue.items()}
    children = {z: [zones.ns_name(n) for n in delegated] for z in zone_names}
    rrsets = zones.parent_rrsets(
        parent.address, hosts, children, ds, ttl=ttl, ds_ttl=ds_ttl, ns_ttl=ns_ttl
    )

    async def create(api: PowerDNSProvider) -> list[CryptoKey]:
        try:
            await powerdns.create_zone(api, zones.PARENT_ZONE, rrsets)
            return await powerdns.add_keys(api, zones.PARENT_ZONE, DEFAULT_ALGORITHM)
        finally:
            await api.aclose()

    return powerdns.call(create(parent.adapter()))
