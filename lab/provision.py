"""Putting the lab's zones and keys into its PowerDNS servers, concurrently.

Benchmarks use hundreds of zones × several providers; each zone costs a few API calls,
which PowerDNS serves in parallel, so a thread pool over (provider, zone) pairs cuts the
setup time several-fold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from lab import powerdns, zones
from lab.errors import LabError
from lab.powerdns import CryptoKey, PowerDNS

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
) -> dict[tuple[str, str], list[CryptoKey]]:
    """Every child zone at every provider, identical content, each signed with the
    provider's own keys; the apex NS RRset names the ``delegated`` providers (default:
    all), at every provider. Returns the keys by (provider, zone)."""
    names = [s.name for s in servers] if delegated is None else list(delegated)
    ns_names = [zones.ns_name(n) for n in names]
    clients = {s.name: s.client() for s in servers}

    def one(server: PowerDNS, zone: str) -> list[CryptoKey]:
        client = clients[server.name]
        powerdns.create_zone(client, zone, zones.child_rrsets(zone, ns_names, ttl))
        return powerdns.add_keys(
            client,
            zone,
            algorithms.get(server.name, DEFAULT_ALGORITHM),
            csk=server.name in csk,
        )

    try:
        jobs = [(s, z) for s in servers for z in zone_names]
        with ThreadPoolExecutor(min(_WORKERS, len(jobs))) as pool:
            futures = {(s.name, z): pool.submit(one, s, z) for s, z in jobs}
            return {key: fut.result() for key, fut in futures.items()}
    finally:
        for c in clients.values():
            c.close()


def signing_keys(keys: Sequence[CryptoKey]) -> list[CryptoKey]:
    """The keys that sign the DNSKEY RRset (KSK or CSK: flags 257, SEP bit)."""
    found = [k for k in keys if k.flags == 257 and k.active]
    if not found:
        raise LabError(f"no active KSK/CSK among {keys}")
    return found


def provision_parent(
    parent: PowerDNS,
    providers: Sequence[PowerDNS],
    zone_names: Sequence[str],
    ds: Mapping[str, list[str]],
    *,
    ttl: int,
    ds_ttl: int,
    ns_ttl: int | None = None,
    delegated: Sequence[str] | None = None,
) -> list[CryptoKey]:
    """The signed parent zone ``test.`` delegating every child to the ``delegated``
    providers (default: all), with the given DS RRsets; an A record for every provider's
    nameserver either way. Returns the parent's keys (its KSK is the resolver's anchor)."""
    glue = {zones.ns_name(p.name): p.address for p in providers}
    names = [p.name for p in providers] if delegated is None else list(delegated)
    children = {z: [zones.ns_name(n) for n in names] for z in zone_names}
    with parent.client() as client:
        powerdns.create_zone(
            client,
            zones.PARENT_ZONE,
            zones.parent_rrsets(
                parent.address, glue, children, ds, ttl=ttl, ds_ttl=ds_ttl, ns_ttl=ns_ttl
            ),
        )
        return powerdns.add_keys(client, zones.PARENT_ZONE, DEFAULT_ALGORITHM)
