"""What the controller saw: plain data handed from the I/O edge to the pure decision code.

Two sources are kept apart on purpose: what a provider's API *says* (``ApiZoneState``)
and what its nameservers *serve* (``ServerView``). Only the latter proves that a
change is live, so every wait condition is written against ``ServerView``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import dns.name
import dns.rrset

from core.keys import Digest, Key, Role


@dataclass(frozen=True)
class ApiKey:
    """A key the provider generated and holds itself (its own signer key)."""

    key: Key
    role: Role
    active: bool  # signs
    published: bool  # served in the DNSKEY RRset
    key_id: str  # the provider's handle for the key


@dataclass(frozen=True)
class ApiZoneState:
    """The zone's DNSSEC material as the provider's API reports it."""

    provider: str
    own_keys: tuple[ApiKey, ...]
    foreign_dnskeys: frozenset[Key]  # keys added through the API (other signers' keys)
    cds: frozenset[Digest]
    cdnskey: frozenset[Key]
    max_ttl: int | None = None  # largest TTL of any RRset in the zone, if the API tells
    ns: frozenset[str] = frozenset()  # apex NS targets (lower-case, absolute)
    csync: frozenset[str] = frozenset()  # apex CSYNC records

    @property
    def published(self) -> frozenset[Key]:
        return frozenset(k.key for k in self.own_keys if k.published)

    @property
    def signing_ksks(self) -> frozenset[Key]:
        """Own keys that sign the DNSKEY RRset: active KSKs and CSKs."""
        return frozenset(
            k.key for k in self.own_keys if k.active and k.published and k.role in ("ksk", "csk")
        )

    @property
    def algorithms(self) -> frozenset[int]:
        return frozenset(k.key.algorithm for k in self.own_keys if k.published)


@dataclass(frozen=True)
class SignedRRset:
    """An RRset as served, with the RRSIGs that covered it and its TTL."""

    rrset: dns.rrset.RRset
    rrsigs: dns.rrset.RRset | None

    @property
    def ttl(self) -> int:
        return int(self.rrset.ttl)

    @property
    def signer_tags(self) -> frozenset[int]:
        if self.rrsigs is None:
            return frozenset()
        return frozenset(int(sig.key_tag) for sig in self.rrsigs)

    @property
    def signer_algorithms(self) -> frozenset[int]:
        if self.rrsigs is None:
            return frozenset()
        return frozenset(int(sig.algorithm) for sig in self.rrsigs)

    def text(self) -> str:
        return "\n".join(sorted(str(self.rrset).splitlines()))


@dataclass(frozen=True)
class ServerView:
    """Everything one nameserver of one provider served for the zone at ``at``."""

    provider: str
    server: str  # "host:port"
    at: datetime
    error: str | None = None  # set when the server gave no usable answer
    dnskey: SignedRRset | None = None
    cds: SignedRRset | None = None
    cdnskey: SignedRRset | None = None
    soa: SignedRRset | None = None
    nsec3: bool | None = None
    ns: SignedRRset | None = None
    csync: SignedRRset | None = None

    @property
    def ns_names(self) -> frozenset[str]:
        if self.ns is None:
            return frozenset()
        return frozenset(rd.target.to_text().lower() for rd in self.ns.rrset)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def keys(self) -> frozenset[Key]:
        if self.dnskey is None:
            return frozenset()
        return frozenset(Key.from_rdata(rd) for rd in self.dnskey.rrset)

    @property
    def cds_set(self) -> frozenset[Digest]:
        if self.cds is None:
            return frozenset()
        return frozenset(Digest.from_rdata(rd) for rd in self.cds.rrset)

    @property
    def cdnskey_set(self) -> frozenset[Key]:
        if self.cdnskey is None:
            return frozenset()
        return frozenset(Key.from_rdata(rd) for rd in self.cdnskey.rrset)

    @property
    def label(self) -> str:
        return f"{self.provider} ({self.server})"


@dataclass(frozen=True)
class ParentView:
    """The DS RRset one of the parent's servers served for the zone."""

    server: str
    at: datetime
    error: str | None = None
    ds: SignedRRset | None = None
    ns: frozenset[str] = frozenset()  # the delegation's NS targets (from the referral)
    ns_ttl: int | None = None

    @property
    def ds_set(self) -> frozenset[Digest]:
        if self.ds is None:
            return frozenset()
        return frozenset(Digest.from_rdata(rd) for rd in self.ds.rrset)


@dataclass(frozen=True)
class CachedRRset:
    """An RRset seen earlier that a resolver may still hold (last seen + TTL >= now)."""

    source: str
    server: str
    rrset: dns.rrset.RRset
    last_seen: datetime
    expires: datetime


@dataclass(frozen=True)
class ZoneView:
    """One observation pass over every nameserver of every signer and the parent."""

    zone: dns.name.Name
    servers: tuple[ServerView, ...]
    parent: tuple[ParentView, ...] = ()
    cached_dnskeys: tuple[CachedRRset, ...] = ()
    cached_ds: tuple[CachedRRset, ...] = ()
    api: dict[str, ApiZoneState] = field(default_factory=dict)
    # each provider's NS hostnames (from the config), to tell which providers resolvers can
    # reach at all: only those named by the delegation or by a reachable NS RRset
    provider_ns: dict[str, frozenset[str]] = field(default_factory=dict)

    def reachable(self) -> frozenset[str]:
        """Providers a resolver can be sent to: named by the parent's NS RRset, or by an NS
        RRset that a reachable provider serves. A provider that serves the zone but is not
        delegated to (a signer about to join) is invisible to resolvers, so its RRsets
        cannot be in any cache. Without the parent's NS or the NS names, every provider
        counts (the conservative answer)."""
        every = frozenset(s.provider for s in self.servers)
        parent_ns = [p.ns for p in self.parent if p.error is None and p.ns]
        if not parent_ns or not self.provider_ns or any(
                not self.provider_ns.get(p) for p in every):
            return every
        names: set[str] = set().union(*parent_ns)
        reached: set[str] = set()
        while True:
            more = {p for p in every - reached if self.provider_ns.get(p, frozenset()) & names}
            if not more:
                return frozenset(reached)
            reached |= more
            for server in self.servers:
                if server.provider in more:
                    names |= server.ns_names
    def of(self, provider: str) -> tuple[ServerView, ...]:
        return tuple(s for s in self.servers if s.provider == provider)

    @property
    def parent_ds(self) -> frozenset[Digest]:
        """The DS set if every parent server agrees, else the union (a superset is safe to
        report: breaches are checked per served set anyway)."""
        out: set[Digest] = set()
        for view in self.parent:
            out |= view.ds_set
        return frozenset(out)
