"""The RFC 8901 sec. 3 invariant (docs/design-notes.md, "The invariant"), checked from what
nameservers serve.

Pure: a ``ZoneView`` (current answers plus RRsets a resolver may still cache) in, a list
of ``Finding`` out. A *breach* means some resolver can fail validation now (or will as
soon as the parent follows the published CDS); a *warning* is a deviation from the steady
state that breaks nothing by itself.

Resolvers validate with whichever DNSKEY RRset they fetched first, from any provider, for
its TTL; so every provider's signatures are checked against *every* DNSKEY RRset served
now or seen within its TTL, not only against the set of the same provider.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
from dns.exception import DeniedByPolicy, ValidationFailure

from core.keys import Digest, Key, parent_follows, signers, tag_label
from core.observation import ServerView, SignedRRset, ZoneView
from orchestrator.decide.evidence import ceil_seconds

Severity = Literal["breach", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    message: str
    provider: str | None = None
    server: str | None = None
    key_tag: int | None = None
    record: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class _KeySet:
    """A distinct DNSKEY RRset some resolver may hold, with where it came from."""

    rrset: dns.rrset.RRset
    keys: frozenset[Key]
    origin: str  # "served by p0 (addr)" / "cached from p0 (addr) until T"


def _keyset(rrset: dns.rrset.RRset) -> frozenset[Key]:
    return frozenset(Key.from_rdata(rd) for rd in rrset)


def _validates(
    signed: SignedRRset, zone: dns.name.Name, keys: dns.rrset.RRset, now: datetime
) -> bool:
    if signed.rrsigs is None or len(keys) == 0:
        return False
    try:
        dns.dnssec.validate(signed.rrset, signed.rrsigs, {zone: keys}, now=now.timestamp())
    except (ValidationFailure, DeniedByPolicy):
        return False
    return True


def _only(rrset: dns.rrset.RRset, keep: frozenset[Key]) -> dns.rrset.RRset:
    out = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
    for rd in rrset:
        if Key.from_rdata(rd) in keep:
            out.add(rd, rrset.ttl)
    return out


def _distinct_keysets(view: ZoneView) -> list[_KeySet]:
    seen: dict[frozenset[Key], _KeySet] = {}
    for server in view.servers:
        if server.dnskey is not None:
            keys = _keyset(server.dnskey.rrset)
            seen.setdefault(keys, _KeySet(server.dnskey.rrset, keys, f"served by {server.label}"))
    for cached in view.cached_dnskeys:
        keys = _keyset(cached.rrset)
        origin = (
            f"cached from {cached.source} ({cached.server}) until "
            f"{ceil_seconds(cached.expires)}"
        )
        seen.setdefault(keys, _KeySet(cached.rrset, keys, origin))
    return list(seen.values())


def _distinct_ds_sets(view: ZoneView) -> list[tuple[frozenset[Digest], str]]:
    seen: dict[frozenset[Digest], str] = {}
    for parent in view.parent:
        if parent.error is None:
            seen.setdefault(parent.ds_set, f"served by the parent ({parent.server})")
    for cached in view.cached_ds:
        ds = frozenset(Digest.from_rdata(rd) for rd in cached.rrset)
        seen.setdefault(
            ds,
            f"cached from the parent ({cached.server}) until "
            f"{ceil_seconds(cached.expires)}",
        )
    return [(ds, origin) for ds, origin in seen.items() if ds]


def _tags(tags: frozenset[int]) -> str:
    return ", ".join(str(t) for t in sorted(tags)) or "none"


def check_zone(view: ZoneView, now: datetime, *, expect_identical: bool = True,
               refresh: timedelta | None = None) -> list[Finding]:
    """``refresh`` (Model 1): a DNSKEY RRSIG expiring sooner than this is a breach, because
    the owner was due to re-sign before then."""
    findings: list[Finding] = []
    zone = view.zone
    reachable = view.reachable()
    hidden = sorted({s.provider for s in view.servers} - reachable)
    if hidden:
        findings.append(Finding("warning", "NOT_DELEGATED",
                                f"{', '.join(hidden)} serve(s) the zone but no NS RRset points "
                                "there: resolvers cannot reach them, so they are not checked"))
        view = replace(view, servers=tuple(s for s in view.servers if s.provider in reachable),
                       cached_dnskeys=tuple(c for c in view.cached_dnskeys
                                            if c.source not in hidden))
    live = [s for s in view.servers if s.ok]
    for server in view.servers:
        if not server.ok:
            findings.append(
                Finding("breach", "UNOBSERVABLE", f"{server.label}: {server.error}",
                        server.provider, server.server)
            )
    for server in live:
        findings.extend(_self_checks(server, zone, now))
    keysets = _distinct_keysets(view)
    for server in live:
        findings.extend(_data_under_every_keyset(server, zone, keysets, now))
    findings.extend(_ds_chain(view, live, now))
    findings.extend(_algorithms(live))
    findings.extend(_cds_safety(view, live, now))
    findings.extend(_steady_state(view, live, expect_identical))
    if refresh is not None:
        findings.extend(_expiring(live, now, refresh))
    return findings


def _expiring(live: list[ServerView], now: datetime, refresh: timedelta) -> list[Finding]:
    out = []
    for server in live:
        if server.dnskey is None or server.dnskey.rrsigs is None:
            continue
        latest = max(int(sig.expiration) for sig in server.dnskey.rrsigs)
        left = latest - now.timestamp()
        if left < refresh.total_seconds():
            out.append(Finding(
                "breach", "RRSIG_EXPIRING",
                f"{server.label}: the DNSKEY RRset's signatures expire in {int(left)}s, inside "
                f"the re-sign window ({refresh}); run 'multisigner sync' or check the daemon",
                server.provider, server.server, None, "RRSIG"))
    return out


def _self_checks(server: ServerView, zone: dns.name.Name, now: datetime) -> list[Finding]:
    out: list[Finding] = []
    if server.dnskey is None:
        return [Finding("breach", "UNSIGNED", f"{server.label} serves no DNSKEY RRset for {zone}",
                        server.provider, server.server)]
    if not _validates(server.dnskey, zone, server.dnskey.rrset, now):
        out.append(Finding(
            "breach", "DNSKEY_NOT_VALIDATABLE",
            f"{server.label}: the DNSKEY RRset does not validate under its own keys "
            f"(signed by {_tags(server.dnskey.signer_tags)})",
            server.provider, server.server,
        ))
    if server.soa is None or server.soa.rrsigs is None:
        out.append(Finding("breach", "UNSIGNED", f"{server.label} serves the SOA without RRSIG",
                           server.provider, server.server))
    return out


def _data_under_every_keyset(
    server: ServerView, zone: dns.name.Name, keysets: list[_KeySet], now: datetime
) -> list[Finding]:
    """Invariant 1: this server's zone-data signatures validate under every DNSKEY set."""
    out: list[Finding] = []
    if server.soa is None or server.soa.rrsigs is None:
        return out
    tags = server.soa.signer_tags
    # The keys this server signs its data with, by signature, never by tag alone: a key in
    # another set that merely shares the signer's tag does not put the signer in that set.
    # Tags no served key verifies (a signer the server does not publish) stay tags.
    signing = signers(server.keys, server.soa.rrset, server.soa.rrsigs)
    unexplained = tags - {k.key_tag for k in signing}
    for keyset in keysets:
        if _validates(server.soa, zone, keyset.rrset, now):
            continue
        missing: list[tuple[int, str]] = [
            (k.key_tag, tag_label(k, signing | keyset.keys))
            for k in sorted(signing - keyset.keys)]
        missing += [(t, str(t)) for t in sorted(unexplained - {k.key_tag for k in keyset.keys})]
        if missing:
            for tag, label in missing:
                out.append(Finding(
                    "breach", "ZSK_MISSING",
                    f"{server.label} signs its data with key {label}, which is missing from "
                    f"the DNSKEY RRset {keyset.origin}",
                    server.provider, server.server, tag, "DNSKEY",
                ))
        else:
            out.append(Finding(
                "breach", "SIGNATURE_INVALID",
                f"{server.label}: SOA signatures by {_tags(tags)} do not validate under the "
                f"DNSKEY RRset {keyset.origin} (expired, not yet valid, or wrong key)",
                server.provider, server.server, None, "SOA",
            ))
    return out


def _ds_chain(view: ZoneView, live: list[ServerView], now: datetime) -> list[Finding]:
    """Invariant 2: every DS set the parent may have given out matches a KSK that signs
    every provider's DNSKEY RRset."""
    out: list[Finding] = []
    zone = view.zone
    for parent in view.parent:
        if parent.error is not None:
            out.append(Finding("breach", "UNOBSERVABLE",
                               f"parent server {parent.server}: {parent.error}; the DS side of "
                               "the invariant cannot be checked", None, parent.server))
    ds_sets = _distinct_ds_sets(view)
    if not ds_sets:
        if any(p.error is None for p in view.parent):
            out.append(Finding("warning", "NO_DS",
                               f"the parent has no DS for {zone}: the zone is not secured"))
        return out
    for ds_set, origin in ds_sets:
        for server in live:
            if server.dnskey is None:
                continue
            keys = server.keys
            matching = frozenset(k for k in keys if any(d.matches(k, zone) for d in ds_set))
            if _validates(server.dnskey, zone, _only(server.dnskey.rrset, matching), now):
                continue
            out.append(Finding(
                "breach", "DS_MISMATCH",
                f"{server.label}: the DNSKEY RRset is signed by {_tags(server.dnskey.signer_tags)}"
                f" but the DS RRset {origin} holds {_tags(frozenset(d.key_tag for d in ds_set))}"
                " — no DS-matching key signs it",
                server.provider, server.server, None, "DS",
            ))
    return out


def _algorithms(live: list[ServerView]) -> list[Finding]:
    """Invariant 3 (RFC 8901 sec. 4): one algorithm set across all signers."""
    by_provider: dict[str, frozenset[int]] = {}
    for server in live:
        if server.soa is not None and server.soa.rrsigs is not None:
            by_provider[server.provider] = by_provider.get(server.provider, frozenset()) | (
                server.soa.signer_algorithms
            )
    if len(set(by_provider.values())) <= 1:
        return []
    detail = "; ".join(
        f"{p}: {', '.join(dns.dnssec.algorithm_to_text(a) for a in sorted(algs))}"
        for p, algs in sorted(by_provider.items())
    )
    return [Finding("breach", "ALGORITHM_MISMATCH",
                    f"signers use different algorithms ({detail}); RFC 8901 sec. 4 requires "
                    "the same algorithm at every signer")]


def _cds_safety(view: ZoneView, live: list[ServerView], now: datetime) -> list[Finding]:
    """A published CDS set the parent may adopt must keep every provider's DNSKEY RRset
    validatable; otherwise the breach is one registry scan away."""
    out: list[Finding] = []
    zone = view.zone
    for publisher in live:
        cds = publisher.cds_set
        if not cds or any(d.is_delete for d in cds):
            continue
        for server in live:
            if server.dnskey is None:
                continue
            matching = frozenset(k for k in server.keys if any(d.matches(k, zone) for d in cds))
            if not _validates(server.dnskey, zone, _only(server.dnskey.rrset, matching), now):
                out.append(Finding(
                    "breach", "CDS_UNSAFE",
                    f"{publisher.label} publishes CDS {_tags(frozenset(d.key_tag for d in cds))};"
                    f" if the parent follows it, the DNSKEY RRset of {server.label} (signed by "
                    f"{_tags(server.dnskey.signer_tags)}) has no matching DS",
                    publisher.provider, publisher.server, None, "CDS",
                ))
    return out


def _steady_state(view: ZoneView, live: list[ServerView], expect_identical: bool) -> list[Finding]:
    out: list[Finding] = []
    if expect_identical and len({s.keys for s in live}) > 1:
        # Labels over every served key: a tag two keys share shows each key's fingerprint.
        every = frozenset().union(*(s.keys for s in live))
        out.append(Finding("warning", "DNSKEY_SETS_DIFFER",
                           "providers serve different DNSKEY RRsets: " + "; ".join(
                               f"{s.label}: "
                               f"{', '.join(sorted(tag_label(k, every) for k in s.keys)) or 'none'}"
                               for s in live)))
    cds_sets = {s.cds_set for s in live}
    cdnskeys = frozenset().union(*(s.cdnskey_set for s in live))
    if len(cds_sets) > 1:
        out.append(Finding("warning", "CDS_INCONSISTENT",
                           "providers publish different CDS RRsets: " + "; ".join(
                               f"{s.label}: {_tags(frozenset(d.key_tag for d in s.cds_set))}"
                               for s in live)))
    if len({s.nsec3 for s in live}) > 1:
        out.append(Finding("warning", "DENIAL_MIXED",
                           "some signers use NSEC and others NSEC3 (allowed, RFC 8901 sec. 5)"))
    if len(cds_sets) == 1 and view.parent:
        (cds,) = cds_sets
        if cds and not parent_follows(view.parent_ds, cdnskeys, view.zone.to_text()):
            ds_tags = _tags(frozenset(d.key_tag for d in view.parent_ds))
            cds_tags = _tags(frozenset(d.key_tag for d in cds))
            out.append(Finding("warning", "PARENT_NOT_FOLLOWING",
                               f"the parent's DS RRset ({ds_tags}) differs from the published "
                               f"CDS ({cds_tags})"))
    return out


def breaches(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "breach"]
