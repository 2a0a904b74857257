"""``multisigner sync`` for Model 1: the owner signs the combined DNSKEY RRset and hands it
to every provider as an SKR, then waits until every nameserver serves it and the parent
DS names the owner KSK. Also the re-signing pass the daemon runs before signatures expire.

Order: observe every provider (API and nameservers) → interlocks → decide the target
(owner KSKs served now, or the newest stored one on first use; every provider's current
ZSKs) → sign (refusing an SKR that lacks any provider's ZSK) → import at every provider
concurrently → wait until served everywhere → wait for the parent DS.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import dns.rdatatype
import dns.rrset

from core.config import ZoneConfig
from core.errors import MultisignerError, Refused
from core.keys import Key, parent_follows
from core.observation import ZoneView
from orchestrator.decide.evidence import ceil_seconds, view_evidence
from orchestrator.decide.owner_signing import (
    Model1Target,
    build_blocks,
    owner_keys_in_use,
    resign_due,
    served_progress,
    zone_problems,
)
from orchestrator.decide.sync_plan import Progress
from orchestrator.engine.runtime import Runtime, holder_id
from orchestrator.engine.sync_process import LEASE_SECONDS, SyncProcess
from orchestrator.engine.waiting import Reporter
from orchestrator.observe.observer import observe, observe_servers, record
from providers.base import Capability
from providers.knot.skr import check_skr_has_zsks, format_skr
from providers.kskstore import KskStore, StoredKey, make_store, sign_rrset_with


def open_store(zone: ZoneConfig) -> KskStore:
    assert zone.owner_ksk is not None  # config guarantees it for model 1
    return make_store(zone.owner_ksk)


def choose_owner_keys(view: ZoneView, stored: list[StoredKey]) -> frozenset[Key]:
    """Steady state: the stored KSKs served now; on first use, the newest stored one."""
    in_use = owner_keys_in_use(view, (s.dnskey for s in stored))
    if in_use:
        return in_use
    newest = max(stored, key=lambda s: (s.created or datetime.min.replace(tzinfo=UTC),
                                        s.key_id))
    return frozenset({newest.dnskey})


def zsks_of(view: ZoneView, signers: list[str]) -> dict[str, frozenset[Key]]:
    return {name: frozenset(k.key for k in view.api[name].own_keys
                            if k.published and not k.key.sep) for name in signers}


async def deliver(rt: Runtime, zone: ZoneConfig, store: KskStore, target: Model1Target,
                  view: ZoneView) -> tuple[datetime, list[str]]:
    """Sign the target and import it at every provider; returns the new signatures'
    expiration and what was done. All providers get the same SKR; if one import fails the
    others still hold a superset-safe set and the next attempt re-imports everywhere."""
    by_key = {s.dnskey: s.key_id for s in store.list_keys()}
    missing = sorted(k.key_tag for k in target.signing if k not in by_key)
    if missing:
        raise Refused(f"{zone.name}: the owner KSK(s) {missing} are not in the key store "
                      f"{store.name}; nothing was delivered")
    signers = [store.signer(by_key[k]) for k in sorted(target.signing)]

    def sign(rrset: dns.rrset.RRset, inception: datetime, expiration: datetime) -> Any:
        return sign_rrset_with(rrset, signers, zone.name, inception, expiration)

    # The providers' requested TTL (Knot signs nothing else into the set), else what is
    # served now, else an hour.
    asked = await asyncio.gather(*(rt.provider(n).requested_dnskey_ttl(zone.name)
                                   for n in target.zsks))
    ttl = (max((t for t in asked if t), default=0)
           or max((s.dnskey.ttl for s in view.servers if s.dnskey), default=0) or 3600)
    now = datetime.now(UTC)
    blocks = build_blocks(target, sign, now, zone.policy, ttl)
    problems = check_skr_has_zsks(blocks, frozenset().union(*target.zsks.values()))
    if problems:
        raise Refused(f"{zone.name}: refusing to deliver an SKR that lacks a provider's ZSK; "
                      "nothing was delivered", problems)
    text = format_skr(zone.name, blocks)
    results = await asyncio.gather(
        *(rt.provider(name).import_skr(zone.name, text) for name in target.zsks),
        return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, MultisignerError):
            raise failure
    if failures:
        raise Refused(f"{zone.name}: {len(failures)} of {len(results)} SKR imports failed; "
                      "the others hold the new set (a superset of what was served). Fix the "
                      "cause and re-run", [str(f) for f in failures])
    expiration = datetime.fromtimestamp(blocks[0].timestamp, UTC) + zone.policy.signature_validity
    return expiration, [f"SKR ({len(blocks)} blocks, {len(target.dnskeys)} keys, signatures "
                        f"until {ceil_seconds(expiration)}) imported at {', '.join(target.zsks)}"]


async def sync_model1(rt: Runtime, zone: ZoneConfig, *, dry_run: bool, report: Reporter,
                      out: Reporter, reason: str = "sync requested") -> str:
    """Returns "in-sync", "dry-run" or "synced"; raises Refused on interlocks."""
    signers = rt.signers(zone)
    for name in signers:
        provider = rt.provider(name)
        if not provider.can(Capability.SIGN_EXTERNAL_DNSKEY_SET):
            raise Refused(f"{zone.name}: provider {name} ({provider.type_name}) cannot serve an "
                          "owner-signed DNSKEY RRset; it cannot be a Model 1 signer")
    running = rt.store.active_process(zone.name)
    if running is not None and running.kind != "sync":
        raise Refused(f"{zone.name} has a running {running.kind} process {running.id} "
                      f"(state {running.state}); sync would interfere")
    if dry_run:
        return await _sync(rt, zone, dry_run=True, report=report, out=out, reason=reason)
    with rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
        return await _sync(rt, zone, dry_run=False, report=report, out=out, reason=reason)


async def _sync(rt: Runtime, zone: ZoneConfig, *, dry_run: bool, report: Reporter,
                out: Reporter, reason: str) -> str:
    from dns.dnssectypes import Algorithm

    view, errors = await observe(rt, zone, keys_only=True)  # NS/CSYNC not needed here
    if errors:
        raise Refused(f"{zone.name}: cannot sync, {len(errors)} provider(s) failed; nothing "
                      "was changed", [str(e) for e in errors.values()])
    signers = rt.signers(zone)
    problems = zone_problems(view, int(Algorithm.from_text(zone.policy.algorithm)), signers)
    if problems:
        raise Refused(f"{zone.name}: refusing to sync; nothing was changed", problems)
    store = open_store(zone)
    try:
        stored = store.list_keys()
        generated: StoredKey | None = None
        if not stored:
            if dry_run:
                out(f"{zone.name}: would generate the owner KSK in {store.name}")
                return "dry-run"
            generated = store.generate()
            stored = [generated]
            report(f"{zone.name}: generated owner KSK {generated.key_tag} in {store.name}")
        owner = choose_owner_keys(view, stored)
        target = Model1Target(zone=zone.name, owner=owner, signing=owner, cds=owner,
                              zsks=zsks_of(view, signers))
        now = datetime.now(UTC)
        stale = served_progress(target, view)
        due = resign_due(view, target.signing, now, zone.policy.signature_refresh)
        parent_ok = all(p.error is None and parent_follows(p.ds_set, target.cds, zone.name)
                        for p in view.parent)
        if stale.done and not due and parent_ok:
            out(f"{zone.name}: in sync; nothing to change")
            return "in-sync"
        why = []
        if not stale.done:
            why.append(f"the combined DNSKEY RRset ({len(target.dnskeys)} keys) is not served "
                       f"at {', '.join(stale.lagging)}")
        if due:
            why.append(f"signatures expire within {zone.policy.signature_refresh} at "
                       + ", ".join(due))
        lines = [f"{zone.name}: plan (model 1)"]
        if why:
            lines.append(f"  1. sign the combined DNSKEY/CDS/CDNSKEY RRsets with owner KSK "
                         f"{', '.join(str(k.key_tag) for k in sorted(target.signing))} and "
                         f"import them at {', '.join(signers)} ({'; '.join(why)})")
        if not parent_ok:
            lines.append("  then wait for the parent's DS RRset to name the owner KSK")
        for line in lines:
            out(line)
        if dry_run:
            out(f"{zone.name}: dry run; nothing was changed")
            return "dry-run"
        await _run_sync(rt, zone, store, target, view, bool(why), report, reason, generated)
    finally:
        store.close()
    out(f"{zone.name}: synced")
    return "synced"


async def _run_sync(rt: Runtime, zone: ZoneConfig, store: KskStore, target: Model1Target,
                    view: ZoneView, deliver_needed: bool, report: Reporter, reason: str,
                    generated: StoredKey | None) -> None:
    async with SyncProcess(rt, zone, report, reason=reason,
                           data={"model": 1, "target": target.as_json()},
                           evidence={"observed": view_evidence(view),
                                     "generated_owner_ksk": generated.key_tag if generated
                                     else None}) as run:
        fresh: datetime | None = None
        if deliver_needed:
            run.move("delivering", "sign and import the combined DNSKEY RRset")
            fresh, done = await deliver(rt, zone, store, target, view)
            run.move("propagating", "; ".join(done), {"target": target.as_json()},
                     waiting_for="every nameserver serves the owner-signed RRsets")

            async def served() -> Progress:
                servers = await observe_servers(
                    rt, zone, only=(dns.rdatatype.DNSKEY, dns.rdatatype.CDS))
                record(rt, zone, servers, (), {}, datetime.now(UTC))
                return served_progress(target, ZoneView(zone=view.zone, servers=servers),
                                       fresh_until=fresh)

            waited = await run.wait("owner-signed DNSKEY RRset at every nameserver", served,
                                    hint="a provider accepted the SKR but does not serve it")
            run.move("waiting-parent", "served by every nameserver",
                     {"propagation_s": round(waited.seconds, 3)},
                     waiting_for="the parent's DS RRset names the owner KSK")
        waited = await run.wait_parent(target.cds)
        final, _ = await observe(rt, zone, api=False)
        run.move("done", "steady state reached",
                 {"parent_ds_wait_s": round(waited.seconds, 3), "observed": view_evidence(final),
                  "signatures_until": fresh.isoformat() if fresh else None}, status="done")
