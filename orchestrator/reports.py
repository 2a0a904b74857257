"""``check``, ``verify`` and ``status``: read-only commands, as data (rendering is in cli)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import dns.flags
import dns.name
import dns.rcode
import dns.rdatatype

from core.config import ZoneConfig
from core.errors import MultisignerError, ProviderError
from core.keys import Key, role_of, tag_labels
from core.observation import ServerView, ZoneView
from orchestrator.capability_check import capability_check
from orchestrator.decide.invariant import Finding, check_zone
from orchestrator.decide.owner_keys import ds_tags, served_owner_ksks, store_problems
from orchestrator.observe.observer import observe
from orchestrator.runtime import Runtime
from providers.base import Capability
from providers.kskstore import make_store
from providers.nameservers import query


async def verify_zone(rt: Runtime, zone: ZoneConfig, *, content: bool = False) -> dict[str, Any]:
    """The invariant from the nameservers (plus what may still be cached), no API calls.
    With ``content``, also that every signer serves the same data (CONTENT_DIFFERS; a
    differing negative-caching TTL is a NEGATIVE_TTL_DIFFERS warning)."""
    view, _ = await observe(rt, zone, api=False)
    findings = check_zone(view, datetime.now(UTC), expect_identical=zone.policy.import_ksks,
                          refresh=zone.policy.signature_refresh if zone.model == 1 else None)
    if content:
        findings += await content_findings(rt, zone, warnings=True)
    from orchestrator.acme.persist import managed_findings  # dns-persist-01 records

    findings += await managed_findings(rt, zone)
    return {
        "name": zone.name,
        "ok": not any(f.severity == "breach" for f in findings),
        "breaches": [f.as_json() for f in findings if f.severity == "breach"],
        "warnings": [f.as_json() for f in findings if f.severity == "warning"],
        "servers": len(view.servers),
        "cached_dnskey_sets": len(view.cached_dnskeys),
    }


def _origins(rt: Runtime, view: ZoneView) -> dict[Key, tuple[str, str]]:
    out: dict[Key, tuple[str, str]] = {}
    for row in rt.store.keys(view.zone.to_text()):
        if row.server == "api" and row.origin:
            out[Key(row.dnskey)] = (row.origin, row.role)
    for name, state in view.api.items():
        for api_key in state.own_keys:
            out[api_key.key] = (name, api_key.role)
    return out


async def zone_status(rt: Runtime, zone: ZoneConfig) -> dict[str, Any]:
    view, errors = await observe(rt, zone)
    now = datetime.now(UTC)
    findings = check_zone(view, now, expect_identical=zone.policy.import_ksks,
                          refresh=zone.policy.signature_refresh if zone.model == 1 else None)
    origins = _origins(rt, view)
    if zone.model == 1:  # the only KSKs of a model 1 zone are the owner's
        for server in view.servers:
            for key in server.keys:
                if key.sep and key not in origins:
                    origins[key] = ("owner", "ksk")
    firsts = {name: next((s for s in view.of(name) if s.ok), None) for name in rt.signers(zone)}
    # CDS membership by digest match, not by tag: two keys may share a tag.
    all_cds = {d for f in firsts.values() if f is not None for d in f.cds_set}
    signers = []
    for name, first in firsts.items():
        servers = view.of(name)
        keys = sorted(first.keys, key=lambda k: (-k.flags, k.key_tag, k.text)) if first else []
        signers.append({
            "name": name,
            "dnskeys": [{
                "key_tag": k.key_tag, "flags": k.flags, "algorithm": k.algorithm,
                "role": origins.get(k, ("", role_of(k)))[1], "origin": origins.get(k, ("",))[0],
                "fingerprint": k.fingerprint,
                "in_cds": k.sep and any(d.matches(k, view.zone) for d in all_cds),
            } for k in keys],
            "cds": sorted(d.text for d in first.cds_set) if first else [],
            "servers": [{"server": s.server, "ok": s.ok, "error": s.error,
                         "dnskeys": sorted(k.key_tag for k in s.keys)} for s in servers],
            "api_error": str(errors[name]) if name in errors else None,
            # when the DNSKEY RRset's signatures run out (Model 1: the owner must re-sign)
            "dnskey_rrsig_expires": _expiry(servers),
        })
    proc = rt.store.active_process(zone.name)
    members = rt.store.members(zone.name)
    notes = []
    if [n for n, _ in members] != list(zone.signers):
        notes.append(f"the config lists signers {', '.join(zone.signers)}; the zone's signers "
                     f"are {', '.join(f'{n} ({s})' for n, s in members)} (changed by signer "
                     "add/remove): update the config")
    parent: dict[str, Any] = {"channel": "cds-scan"}
    if zone.parent.type == "dsync":
        from orchestrator.observe.observer import parent_servers
        from orchestrator.parent_checks import dsync_parent_status

        parent = await dsync_parent_status(zone, await parent_servers(zone))
    elif zone.parent.type == "route53domains":
        parent = {"channel": "route53domains",
                  "domain": zone.parent.registered_domain(zone.name)}
    return {
        "notes": notes,
        "name": zone.name,
        "model": zone.model,
        "consistent": not any(f.severity == "breach" for f in findings),
        "findings": [f.as_json() for f in findings],
        "process": None if proc is None else {
            "id": proc.id, "kind": proc.kind, "signer": proc.signer, "state": proc.state,
            "waiting_for": proc.waiting_for,
            "next_check_at": proc.next_check_at.isoformat() if proc.next_check_at else None,
        },
        "signers": signers,
        "parent": {
            "ds": sorted(d.text for d in view.parent_ds),
            "servers": [{"server": p.server, "error": p.error,
                         "ttl": p.ds.ttl if p.ds else None} for p in view.parent],
            **parent,
        },
    }


async def check_all(rt: Runtime) -> list[dict[str, Any]]:
    """Configuration and reachability: every provider API (credentials, zone present) and
    every nameserver (answers authoritatively for each zone it should serve); then every
    Model 1 zone's owner-KSK store (:func:`owner_store_check`), every DSYNC parent
    (``orchestrator/parent_checks.py``) and every Route 53 Domains parent
    (``orchestrator/registrar_checks.py``). Provider items have
    ``provider``, store items ``label`` and ``zone``; all have ``ok``, ``problems``,
    ``notes``."""
    async def provider(name: str) -> dict[str, Any]:
        problems: list[str] = []
        try:
            await rt.provider(name).check_access()
        except MultisignerError as exc:
            return {"provider": name, "ok": False, "problems": [str(exc)]}
        zones = [z for z in rt.config.zones if name in rt.signers(z)]
        reads = await asyncio.gather(*(rt.provider(name).read_zone(z.name) for z in zones),
                                     return_exceptions=True)
        for res in reads:
            if isinstance(res, ProviderError):
                problems.append(str(res))
            elif isinstance(res, BaseException):
                raise res
        async def soa(server: str, zone: str) -> str | None:
            try:
                answer = await query(server, dns.name.from_text(zone), dns.rdatatype.SOA)
            except MultisignerError as exc:
                return f"nameserver {exc}"
            if (answer.rcode() == dns.rcode.SERVFAIL
                    and rt.provider(name).can(Capability.SIGN_EXTERNAL_DNSKEY_SET)):
                # An offline-KSK signer serves nothing before its first owner-signed key
                # set: reachable and configured, just not synced yet (verify's business).
                notes.append(f"nameserver {server} answers SERVFAIL for {zone}: no "
                             "owner-signed key set yet (run sync)")
                return None
            if not answer.flags & dns.flags.AA:
                return f"nameserver {server} is not authoritative for {zone}"
            return None

        notes: list[str] = []
        found = await asyncio.gather(*(soa(server, z.name)
                                       for server in rt.config.provider(name).nameservers
                                       for z in zones))
        problems += [p for p in found if p]
        return {"provider": name, "ok": not problems, "problems": problems, "notes": notes}

    providers = await asyncio.gather(*(provider(p.name) for p in rt.config.providers))
    gate = asyncio.Semaphore(32)  # thousands of zones: a bounded number of observations

    async def store(zone: ZoneConfig) -> dict[str, Any]:
        async with gate:
            return await owner_store_check(rt, zone)

    stores = await asyncio.gather(*(store(z) for z in rt.config.zones
                                    if z.model == 1 and z.owner_ksk is not None))

    async def dsync(zone: ZoneConfig) -> dict[str, Any]:
        from orchestrator.observe.observer import parent_servers
        from orchestrator.parent_checks import dsync_parent_check

        async with gate:
            try:
                servers = await parent_servers(zone)
            except MultisignerError as exc:
                return {"label": f"zone {zone.name} parent (dsync)", "zone": zone.name,
                        "ok": False, "problems": [str(exc)], "notes": []}
            return await dsync_parent_check(zone, servers)

    async def registrar(zone: ZoneConfig) -> dict[str, Any]:
        from orchestrator.registrar_checks import route53domains_check

        async with gate:
            return await route53domains_check(zone)

    parents = await asyncio.gather(
        *(dsync(z) for z in rt.config.zones if z.parent.type == "dsync"),
        *(registrar(z) for z in rt.config.zones if z.parent.type == "route53domains"))
    return [*providers, *stores, *parents, *capability_check(rt)]


async def owner_store_check(rt: Runtime, zone: ZoneConfig) -> dict[str, Any]:
    """A Model 1 zone's owner-KSK store: opened, its keys listed, and compared with what
    the zone serves and what the parent's DS names (the rule sync applies before it
    signs; orchestrator/decide/owner_keys.py). A problem here is one sync would refuse."""
    assert zone.owner_ksk is not None
    label = f"zone {zone.name} owner KSK store"
    try:
        with make_store(zone.owner_ksk) as store:
            label = f"zone {zone.name} owner KSK store {store.name}"
            held = frozenset(k.dnskey for k in store.list_keys())
    except MultisignerError as exc:
        return {"label": label, "zone": zone.name, "ok": False, "problems": [str(exc)],
                "notes": []}
    view, _ = await observe(rt, zone)  # API failures are the provider checks' business
    served = served_owner_ksks(view)
    notes = [f"holds key tag(s) {_tags(held)}; the zone serves owner KSK tag(s) "
             f"{_tags(served)}; the parent's DS names key tag(s) "
             f"{', '.join(str(t) for t in ds_tags(view)) or 'none'}"]
    problems = store_problems(view, held, store.name)
    if not held and not problems:
        notes.append("empty: the first 'sync' (or 'ksk init') makes the zone's first KSK, "
                     "as no KSK is served and the parent has no DS")
    return {"label": label, "zone": zone.name, "ok": not problems,
            "problems": problems[1:] if problems else [], "notes": notes}


def _tags(keys: frozenset[Key]) -> str:
    return ", ".join(tag_labels(keys)) or "none"


def _expiry(servers: tuple[ServerView, ...]) -> str | None:
    times = [max(int(sig.expiration) for sig in s.dnskey.rrsigs)
             for s in servers if s.dnskey is not None and s.dnskey.rrsigs is not None]
    if not times:
        return None
    return datetime.fromtimestamp(min(times), UTC).isoformat()


async def content_findings(rt: Runtime, zone: ZoneConfig, providers: list[str] | None = None,
                           *, warnings: bool = False) -> list[Finding]:
    """CONTENT_DIFFERS breaches between the providers' zone contents (default: the zone's
    signers); with ``warnings``, also what differs without changing answers (a different
    negative-caching TTL). Without it the list is exactly what must block a signer change."""
    from orchestrator.decide.content import compare
    from orchestrator.observe.content import fetch

    names = providers if providers is not None else rt.signers(zone)
    servers = {n: rt.config.provider(n).nameservers[0] for n in names}
    contents, method = await fetch(servers, zone.name)
    # A dsync zone's apex KEY RRset is the controller's own (its SIG(0) key, written at
    # every signer by each converge, a joining one included).
    managed = frozenset({(zone.name, "KEY")}) if zone.parent.type == "dsync" else frozenset()
    return [Finding(d.severity, d.code, f"{d.message} (compared by {method})")
            for d in compare(contents, zone.name, managed=managed)
            if warnings or d.severity == "breach"]
