"""Model 1 decisions, pure: the combined DNSKEY RRset the owner signs, the signed key set
that carries it to every provider, and whether what the providers serve is current.

RRSIG timing follows ``keymgr sign-ksr``: inception 1.5 h before each block (controller or
resolver clocks that run behind still accept the signature), expiration
``signature_validity`` after it, and a second, refresh block starting ``signature_validity
- signature_refresh`` later, so that even if the controller is down when it should
re-sign, the providers switch to fresh signatures by themselves and no served RRSIG lapses
before the next delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.dnssectypes import Algorithm

from core.config import PolicyConfig
from core.keys import Key, signers
from core.keyset import SignedKeyBlock, SignedKeySet, SignedRRset
from core.observation import ServerView, ZoneView
from orchestrator.decide.evidence import ceil_seconds
from orchestrator.decide.sync_plan import Progress

BACKDATE = timedelta(hours=1, minutes=30)
Signer = Callable[[dns.rrset.RRset, datetime, datetime], dns.rrset.RRset]


@dataclass(frozen=True)
class Model1Target:
    zone: str
    owner: frozenset[Key]  # owner KSKs in the DNSKEY RRset
    signing: frozenset[Key]  # owner KSKs whose RRSIGs cover the key RRsets
    cds: frozenset[Key]  # owner KSKs named by CDS/CDNSKEY
    zsks: Mapping[str, frozenset[Key]]  # each provider's current ZSKs

    @property
    def dnskeys(self) -> frozenset[Key]:
        return self.owner.union(*self.zsks.values())

    def as_json(self) -> dict[str, Any]:
        return {"owner": sorted(k.key_tag for k in self.owner),
                "signing": sorted(k.key_tag for k in self.signing),
                "cds": sorted(k.key_tag for k in self.cds),
                "zsks": {p: sorted(k.key_tag for k in ks) for p, ks in sorted(self.zsks.items())}}


def block_times(now: datetime, policy: PolicyConfig) -> list[int]:
    start = int(now.timestamp()) - 1  # Knot serves a block from its time on; 1 s back = now
    times = [start]
    # The refresh block takes over a quarter of the refresh window *before* the first
    # block's signatures enter it, so a served signature never looks due (or is flagged
    # RRSIG_EXPIRING) just because a provider switched blocks a moment late.
    refresh = policy.signature_refresh.total_seconds()
    gap = policy.signature_validity.total_seconds() - refresh - refresh / 4
    if gap > 0:
        times.append(start + int(gap))
    return times


def build_keyset(target: Model1Target, sign: Signer, now: datetime, policy: PolicyConfig,
                 dnskey_ttl: int) -> SignedKeySet:
    """The signed key set: one block now and one refresh block (see module docstring)."""
    zone = dns.name.from_text(target.zone)
    dnskey = _rrset(zone, dns.rdatatype.DNSKEY, dnskey_ttl, (k.text for k in target.dnskeys))
    cdnskey = _rrset(zone, dns.rdatatype.CDNSKEY, 0, (k.text for k in target.cds))
    cds = _rrset(zone, dns.rdatatype.CDS, 0, (k.ds(zone).text for k in target.cds))
    blocks = []
    for ts in block_times(now, policy):
        start = datetime.fromtimestamp(ts, now.tzinfo)
        window = (start - BACKDATE, start + policy.signature_validity)
        blocks.append(SignedKeyBlock(
            valid_from=ts, dnskey=SignedRRset(dnskey, sign(dnskey, *window)),
            cds=SignedRRset(cds, sign(cds, *window)) if target.cds else None,
            cdnskey=SignedRRset(cdnskey, sign(cdnskey, *window)) if target.cds else None,
        ))
    return SignedKeySet(target.zone, tuple(blocks))


def _rrset(zone: dns.name.Name, rdtype: dns.rdatatype.RdataType, ttl: int,
           texts: Iterable[str]) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(zone, ttl, dns.rdataclass.IN, rdtype, sorted(texts))


def rrsig_expiry(server: ServerView, signing: frozenset[Key]) -> datetime | None:
    """The latest expiration of an owner RRSIG over the server's DNSKEY RRset."""
    if server.dnskey is None or server.dnskey.rrsigs is None:
        return None
    rrset = server.dnskey.rrset
    # Signatures by the owner's keys, by signature: a provider key sharing a tag with an
    # owner KSK must not lend its RRSIG's expiry to the owner's.
    times = [int(sig.expiration) for sig in server.dnskey.rrsigs
             if signers(signing, rrset, [sig])]
    if not times:
        return None
    return datetime.fromtimestamp(max(times), server.at.tzinfo)


def served_progress(target: Model1Target, view: ZoneView, *,
                    fresh_until: datetime | None = None) -> Progress:
    """Every nameserver serves the target set, signed by the owner's signing KSKs, with the
    target CDS; with ``fresh_until``, also signatures expiring no earlier than that (proof
    that a re-signed SKR, not merely an older identical one, is live)."""
    want_cds = frozenset(k.ds(target.zone) for k in target.cds)
    lagging = []
    for server in view.servers:
        ok = (server.ok and server.keys == target.dnskeys
              and server.dnskey is not None
              and signers(target.signing, server.dnskey.rrset,
                          server.dnskey.rrsigs) == target.signing
              and server.cds_set == want_cds)
        if ok and fresh_until is not None:
            expiry = rrsig_expiry(server, target.signing)
            ok = expiry is not None and expiry >= fresh_until - timedelta(seconds=1)
        if not ok:
            lagging.append(server.label)
    return Progress(len(view.servers) - len(lagging), len(view.servers), tuple(lagging))


def resign_due(view: ZoneView, signing: frozenset[Key], now: datetime,
               refresh: timedelta) -> list[str]:
    """Servers whose owner signature over the DNSKEY RRset expires within ``refresh``."""
    out = []
    for server in view.servers:
        if not server.ok:
            continue
        expiry = rrsig_expiry(server, signing)
        if expiry is None or expiry - now < refresh:
            when = ceil_seconds(expiry) if expiry else "no owner signature"
            out.append(f"{server.label} ({when})")
    return out


def owner_keys_in_use(view: ZoneView, stored: Iterable[Key]) -> frozenset[Key]:
    """The stored owner KSKs some nameserver serves now: the steady-state owner set."""
    served = frozenset().union(*(s.keys for s in view.servers if s.ok))
    return frozenset(k for k in stored if k in served)


def zone_problems(view: ZoneView, algorithm: int, signers: list[str]) -> list[str]:
    """Interlocks before signing anything."""
    out: list[str] = []
    for name in signers:
        state = view.api.get(name)
        if state is None:
            continue
        zsks = [k for k in state.own_keys if k.published and not k.key.sep]
        if not any(k.active for k in zsks):
            out.append(f"{name} has no active ZSK for {view.zone}: create one at the provider "
                       "(keymgr ... generate) first")
        for key in zsks:
            if key.key.algorithm != algorithm:
                out.append(f"{name} holds ZSK {key.key.key_tag} (key id {key.key_id}) of "
                           f"algorithm {key.key.algorithm_name}; the zone uses "
                           f"{Algorithm(algorithm).name} (RFC 8901 sec. 4): remove it at the "
                           "provider")
        for key in state.own_keys:
            if key.published and key.key.sep:
                out.append(f"{name} publishes its own {key.role.upper()} {key.key.key_tag} "
                           f"(key id {key.key_id}); in Model 1 the owner holds the only KSK "
                           "(RFC 8901 sec. 7: no CSKs in Model 1): remove it at the provider")
    return out
