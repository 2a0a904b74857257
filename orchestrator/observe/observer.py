"""Gather one ``ZoneView``: every nameserver of every signer, the parent, and (optionally)
every signer's API, all concurrently; then remember what was seen.

Remembering matters: a DNSKEY or DS RRset a nameserver served a moment ago may sit in a
resolver's cache for its TTL, so the invariant is checked against those too.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from core.config import ZoneConfig
from core.errors import ObservationError, ProviderError
from core.keys import Key, role_of
from core.observation import ApiZoneState, CachedRRset, ParentView, ServerView, ZoneView
from orchestrator.decide import follow
from orchestrator.runtime import Runtime
from providers.nameservers import find_parent_servers, observe_parent, observe_server
from state.store import KeyRecord, RRsetRecord


async def parent_servers(zone: ZoneConfig) -> list[str]:
    if zone.parent.nameservers:
        return list(zone.parent.nameservers)
    return await find_parent_servers(dns.name.from_text(zone.name))


async def read_apis(
    rt: Runtime, zone: ZoneConfig, signers: list[str] | None = None, *, keys_only: bool = False
) -> tuple[dict[str, ApiZoneState], dict[str, ProviderError]]:
    """Every signer's API view of the zone; failures are returned per provider, not raised,
    so one call reports every broken provider at once. ``keys_only``: just the signers' own
    keys (cheaper; enough for key-age checks)."""
    signers = rt.signers(zone) if signers is None else signers
    results = await asyncio.gather(
        *((rt.provider(name).read_keys(zone.name) if keys_only
           else rt.provider(name).read_zone(zone.name)) for name in signers),
        return_exceptions=True,
    )
    states: dict[str, ApiZoneState] = {}
    errors: dict[str, ProviderError] = {}
    for name, result in zip(signers, results, strict=True):
        if isinstance(result, ProviderError):
            errors[name] = result
        elif isinstance(result, BaseException):
            raise result
        else:
            states[name] = result
    return claim_successors(rt, zone.name, states), errors


def claim_successors(rt: Runtime, zone: str,
                     states: dict[str, ApiZoneState]) -> dict[str, ApiZoneState]:
    """Tell the pre-published successors of signers whose keys are known only from served
    signatures apart from foreign keys (``decide.follow``), by which signers the state DB
    has ever seen holding each key."""
    readers = {n for n in states if rt.provider(n).keys_from_signatures}
    if not readers or not any(states[n].foreign_dnskeys for n in readers):
        return states
    ever: dict[Key, set[str]] = {}
    for row in rt.store.keys(zone):
        if row.server == "api" and row.origin:
            ever.setdefault(Key(row.dnskey), set()).add(row.origin)
    return follow.claim_successors(states, readers, ever)


async def observe_servers(
    rt: Runtime, zone: ZoneConfig, *, csync: bool = False, signers: list[str] | None = None,
    only: tuple[dns.rdatatype.RdataType, ...] | None = None,
) -> tuple[ServerView, ...]:
    apex = dns.name.from_text(zone.name)
    tasks = [
        observe_server(apex, name, server, csync=csync, only=only)
        for name in (rt.signers(zone) if signers is None else signers)
        for server in rt.config.provider(name).nameservers
    ]
    return tuple(await asyncio.gather(*tasks))


async def observe_parents(zone: ZoneConfig, *, ns: bool = True) -> tuple[ParentView, ...]:
    apex = dns.name.from_text(zone.name)
    try:
        servers = await parent_servers(zone)
    except ObservationError as exc:
        return (ParentView(server="(parent)", at=datetime.now(UTC), error=str(exc)),)
    return tuple(await asyncio.gather(*(observe_parent(apex, s, ns=ns) for s in servers)))


async def observe(
    rt: Runtime, zone: ZoneConfig, *, api: bool = True, parent: bool = True, csync: bool = False,
    signers: list[str] | None = None, keys_only: bool = False, servers: bool = True,
    only: tuple[dns.rdatatype.RdataType, ...] | None = None,
) -> tuple[ZoneView, dict[str, ProviderError]]:
    """One full observation pass, recorded in the state DB. ``signers`` overrides the zone's
    membership (to look at a provider before it joins)."""
    apex = dns.name.from_text(zone.name)
    api_task = read_apis(rt, zone, signers, keys_only=keys_only) if api else _no_api()
    parent_task = observe_parents(zone) if parent else _no_parent()
    servers_task = (observe_servers(rt, zone, csync=csync, signers=signers, only=only)
                    if servers else _no_servers())
    (states, errors), answers, parents = await asyncio.gather(api_task, servers_task, parent_task)
    now = datetime.now(UTC)
    provider_ns = provider_ns_names(rt)
    reachable = ZoneView(zone=apex, servers=answers, parent=parents,
                         provider_ns=provider_ns).reachable()
    record(rt, zone, answers, parents, states, now, reachable=reachable)
    view = ZoneView(
        zone=apex,
        servers=answers,
        parent=parents,
        cached_dnskeys=cached(rt, zone.name, "DNSKEY", now),
        cached_ds=cached(rt, zone.name, "DS", now),
        api=states,
        provider_ns=provider_ns,
    )
    return view, errors


def provider_ns_names(rt: Runtime) -> dict[str, frozenset[str]]:
    return {p.name: frozenset(n.lower() for n in p.ns_names) for p in rt.config.providers}


async def _no_api() -> tuple[dict[str, ApiZoneState], dict[str, ProviderError]]:
    return {}, {}


async def _no_servers() -> tuple[ServerView, ...]:
    return ()


async def _no_parent() -> tuple[ParentView, ...]:
    return ()


@functools.lru_cache(maxsize=4096)
def _parsed(zone: str, ttl: int, rrtype: str, text: str) -> dns.rrset.RRset:
    """A recorded RRset, parsed. Memoised: every observation of a zone reads back the same
    few recorded sets, and parsing their text was a large part of an observation's CPU.
    The RRsets are shared, so they are only ever read (as every ZoneView is)."""
    return dns.rrset.from_text_list(
        dns.name.from_text(zone), ttl, dns.rdataclass.IN, dns.rdatatype.from_text(rrtype),
        [line.split(None, 4)[4] for line in text.splitlines() if line.strip()],
    )


def cached(rt: Runtime, zone: str, rrtype: str, now: datetime) -> tuple[CachedRRset, ...]:
    out = []
    for row in rt.store.cached_rrsets(zone, rrtype, now):
        rrset = _parsed(zone, row.ttl, rrtype, row.text)
        out.append(CachedRRset(source=row.source, server=row.server, rrset=rrset,
                               last_seen=row.last_seen,
                               expires=row.last_seen + timedelta(seconds=row.ttl)))
    return tuple(out)


def record(
    rt: Runtime,
    zone: ZoneConfig,
    servers: tuple[ServerView, ...],
    parents: tuple[ParentView, ...],
    states: dict[str, ApiZoneState],
    now: datetime,
    *,
    reachable: frozenset[str] | None = None,
) -> None:
    """Store RRsets (and, when API states are given, keys with their owners)."""
    owners: dict[Key, tuple[str, str]] = {}
    keys: list[KeyRecord] = []
    for name, state in states.items():
        for api_key in state.own_keys:
            owners[api_key.key] = (name, api_key.role)
            if api_key.published:
                keys.append(KeyRecord(zone.name, name, "api", api_key.key.key_tag,
                                      api_key.key.algorithm, api_key.key.flags, api_key.role,
                                      name, api_key.key.text, 0))
    rrsets: list[RRsetRecord] = []
    for view in servers:
        if reachable is not None and view.provider not in reachable:
            continue  # no resolver can have cached what an undelegated provider serves
        for rrtype, signed in (("DNSKEY", view.dnskey), ("CDS", view.cds),
                               ("CDNSKEY", view.cdnskey)):
            if signed is not None:
                rrsets.append(RRsetRecord(zone.name, view.provider, view.server, rrtype,
                                          signed.text(), signed.ttl))
        if view.dnskey is not None and states:
            for key in view.keys:
                origin, role = owners.get(key, ("", role_of(key)))
                keys.append(KeyRecord(zone.name, view.provider, view.server, key.key_tag,
                                      key.algorithm, key.flags, role, origin, key.text,
                                      view.dnskey.ttl))
    for pview in parents:
        if pview.ds is not None:
            rrsets.append(RRsetRecord(zone.name, "parent", pview.server, "DS", pview.ds.text(),
                                      pview.ds.ttl))
    rt.store.record_observations(rrsets, keys, now)


def last_owned(rt: Runtime, zone: str) -> dict[Key, datetime]:
    """When each key stopped being some signer's own, as far as the controller knows: the
    later of the last time an API reported it as its own and the first time a nameserver
    was seen serving it with no owner. The second matters when the API is read rarely
    (sync from cron): a key a provider retired a moment ago must not count as long gone
    just because the controller last looked long ago."""
    owned: dict[Key, datetime] = {}
    unowned: dict[Key, datetime] = {}
    for row in rt.store.keys(zone):
        key = Key(row.dnskey)
        if row.server == "api" and row.origin:
            if key not in owned or row.last_seen > owned[key]:
                owned[key] = row.last_seen
        elif not row.origin and (key not in unowned or row.first_seen < unowned[key]):
            unowned[key] = row.first_seen
    out = dict(owned)
    for key, since in unowned.items():
        if key not in out or since > out[key]:
            out[key] = since
    return out
