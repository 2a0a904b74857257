"""Model 1 delivery: sign the target DNSKEY/CDS/CDNSKEY RRsets with the owner's KSK and
hand the signed key set to every provider.

The set is provider-neutral (:class:`core.keyset.SignedKeySet`); each adapter's
``serve_signed_keyset`` turns it into what its server takes (Knot: an SKR import).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import dns.rrset

from core.config import ZoneConfig
from core.errors import Refused
from core.keyset import lacking_keys
from core.observation import ZoneView
from orchestrator.decide.evidence import ceil_seconds
from orchestrator.decide.owner_signing import Model1Target, build_keyset
from orchestrator.engine.fanout import at_every_provider
from orchestrator.engine.key_holders import off_loop
from orchestrator.runtime import Runtime
from providers.kskstore import KskStore, sign_rrset_with


async def deliver(rt: Runtime, zone: ZoneConfig, store: KskStore, target: Model1Target,
                  view: ZoneView) -> tuple[datetime, list[str]]:
    """Sign the target and hand it to every provider; returns the new signatures'
    expiration and what was done. All providers get the same set; if one delivery fails
    the others still hold a superset-safe set and the next attempt delivers everywhere."""
    listed = await off_loop(f"{zone.name}: listing the owner's KSKs", store.list_keys)
    by_key = {s.dnskey: s.key_id for s in listed}
    missing = sorted(k.key_tag for k in target.signing if k not in by_key)
    if missing:
        raise Refused(f"{zone.name}: the owner KSK(s) {missing} are not in the key store "
                      f"{store.name}; nothing was delivered")
    signers = await off_loop(f"{zone.name}: opening the owner's signing keys", lambda: [
        store.signer(by_key[k]) for k in sorted(target.signing)])

    def sign(rrset: dns.rrset.RRset, inception: datetime, expiration: datetime) -> Any:
        return sign_rrset_with(rrset, signers, zone.name, inception, expiration)

    # The providers' requested TTL (Knot signs nothing else into the set), else what is
    # served now, else an hour.
    asked = await asyncio.gather(*(rt.provider(n).requested_dnskey_ttl(zone.name)
                                   for n in target.zsks))
    ttl = (max((t for t in asked if t), default=0)
           or max((s.dnskey.ttl for s in view.servers if s.dnskey), default=0) or 3600)
    # Signing (PKCS#11, KMS) blocks: in a thread, bounded, like every key-store call.
    keyset = await off_loop(f"{zone.name}: signing the key set with the owner's KSK",
                            lambda: build_keyset(target, sign, datetime.now(UTC), zone.policy,
                                                 ttl))
    problems = lacking_keys(keyset.blocks, frozenset().union(*target.zsks.values()))
    if problems:
        raise Refused(f"{zone.name}: refusing to deliver an SKR that lacks a provider's ZSK; "
                      "nothing was delivered", problems)
    await at_every_provider(
        [rt.provider(name).serve_signed_keyset(zone.name, keyset) for name in target.zsks],
        failed=f"{zone.name}: {{failed}} of {{total}} SKR imports failed; the others hold the "
        "new set (a superset of what was served). Fix the cause and re-run")
    first = keyset.blocks[0].valid_from
    expiration = datetime.fromtimestamp(first, UTC) + zone.policy.signature_validity
    return expiration, [f"SKR ({len(keyset.blocks)} blocks, {len(target.dnskeys)} keys, "
                        f"signatures until {ceil_seconds(expiration)}) imported at "
                        f"{', '.join(target.zsks)}"]
