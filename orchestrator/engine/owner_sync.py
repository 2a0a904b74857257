"""``multisigner sync`` for Model 1: the owner signs the combined DNSKEY RRset and hands it
to every provider as an SKR, then waits until every nameserver serves it and the parent
DS names the owner KSK. Also the re-signing pass the daemon runs before signatures expire.

Order: observe every provider (API and nameservers) → interlocks → decide the target
(owner KSKs served now, or the newest stored one on first use; every provider's current
ZSKs) → sign (refusing an SKR that lacks any provider's ZSK) → import at every provider
concurrently → wait until served everywhere → wait for the parent DS.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dns.rdatatype
import dns.rrset

from core.config import ZoneConfig
from core.errors import Refused
from core.keys import Key, parent_follows
from core.observation import ZoneView
from orchestrator.decide.evidence import view_evidence
from orchestrator.decide.owner_signing import (
    Model1Target,
    owner_keys_in_use,
    resign_due,
    served_progress,
    zone_problems,
)
from orchestrator.decide.sync_plan import Progress
from orchestrator.engine.keyset_delivery import deliver as deliver  # noqa: PLC0414 (owner_steps imports it from here)
from orchestrator.engine.runtime import Runtime, holder_id
from orchestrator.engine.sync_process import LEASE_SECONDS, SyncProcess
from orchestrator.engine.waiting import Reporter
from orchestrator.observe.observer import observe, observe_servers, record
from providers.base import Capability
from providers.kskstore import KskStore, StoredKey, make_store


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
