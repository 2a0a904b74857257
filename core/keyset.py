"""The owner-signed apex key RRsets a Model 1 provider serves, in a provider-neutral form.

In Model 1 the zone owner holds the only KSK: it signs the combined DNSKEY RRset (its KSK
plus every provider's ZSKs) and the CDS/CDNSKEY RRsets, and every provider serves exactly
those RRsets with the owner's RRSIGs. A :class:`SignedKeySet` is that hand-over: an ordered
series of :class:`SignedKeyBlock`, each in effect from its time until the next one's (the
last until its signatures expire). A later block lets a provider switch to fresher
signatures by itself, so no served RRSIG lapses while the controller is away.

Each provider adapter translates a set into its own exchange format (Knot: an SKR file).
Pure data, no I/O; the constructors refuse sets no provider could serve.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Set
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY

from core.keys import Key


class KeySetError(ValueError):
    """RRsets that do not form a servable owner-signed key set."""


def iso(timestamp: int) -> str:
    """``2026-11-25T13:15:26Z``: how block times read in messages."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@dataclass(frozen=True)
class SignedRRset:
    """An apex RRset and the RRSIGs over it."""

    rrset: dns.rrset.RRset
    rrsigs: dns.rrset.RRset

    def __post_init__(self) -> None:
        label = dns.rdatatype.to_text(self.rrset.rdtype)
        if not len(self.rrset):
            raise KeySetError(f"the {label} RRset is empty")
        if (self.rrsigs.rdtype != dns.rdatatype.RRSIG or self.rrsigs.covers != self.rrset.rdtype
                or self.rrsigs.name != self.rrset.name):
            raise KeySetError(f"the signatures of the {label} RRset at {self.rrset.name} must "
                              f"be RRSIGs at that name covering {label}")
        if not len(self.rrsigs):
            raise KeySetError(f"no RRSIG over the {label} RRset at {self.rrset.name}")


_TYPES = {"dnskey": dns.rdatatype.DNSKEY, "cds": dns.rdatatype.CDS,
          "cdnskey": dns.rdatatype.CDNSKEY}


@dataclass(frozen=True)
class SignedKeyBlock:
    """The signed DNSKEY RRset, and the signed CDS and CDNSKEY RRsets when the parent is
    to be told about keys, in effect from ``valid_from`` (unix seconds) on."""

    valid_from: int
    dnskey: SignedRRset
    cds: SignedRRset | None = None
    cdnskey: SignedRRset | None = None

    def __post_init__(self) -> None:
        for field, rdtype in _TYPES.items():
            signed: SignedRRset | None = getattr(self, field)
            if signed is not None and signed.rrset.rdtype != rdtype:
                raise KeySetError(f"block {iso(self.valid_from)}: the {field} field holds a "
                                  f"{dns.rdatatype.to_text(signed.rrset.rdtype)} RRset")
            if signed is not None and signed.rrset.name != self.dnskey.rrset.name:
                raise KeySetError(f"block {iso(self.valid_from)}: {signed.rrset.name} is not "
                                  f"the DNSKEY RRset's owner {self.dnskey.rrset.name}")

    @property
    def keys(self) -> frozenset[Key]:
        """The keys of the DNSKEY RRset."""
        return frozenset(Key.from_rdata(rd) for rd in self.dnskey.rrset
                         if isinstance(rd, DNSKEY))

    @property
    def signed_rrsets(self) -> tuple[SignedRRset, ...]:
        return tuple(s for s in (self.dnskey, self.cds, self.cdnskey) if s is not None)


@dataclass(frozen=True)
class SignedKeySet:
    """The blocks a provider serves for ``zone`` (absolute name), oldest first."""

    zone: str
    blocks: tuple[SignedKeyBlock, ...]

    def __post_init__(self) -> None:
        apex = dns.name.from_text(self.zone)
        if not self.blocks:
            raise KeySetError(f"{self.zone}: a signed key set needs at least one block")
        previous: int | None = None
        for block in self.blocks:
            if previous is not None and block.valid_from <= previous:
                raise KeySetError(f"{self.zone}: block times must ascend: "
                                  f"{block.valid_from} follows {previous}")
            previous = block.valid_from
            if block.dnskey.rrset.name != apex:
                raise KeySetError(f"{self.zone}: block {iso(block.valid_from)} holds the "
                                  f"DNSKEY RRset of {block.dnskey.rrset.name}")


def lacking_keys(blocks: Iterable[SignedKeyBlock], required: Set[Key]) -> list[str]:
    """Problems (empty list = fine): every block's DNSKEY RRset must hold every key of
    ``required`` (each provider's current ZSKs). A provider serving a DNSKEY RRset without
    a ZSK it signs with serves data no resolver can validate."""
    problems: list[str] = []
    count = 0
    for block in blocks:
        count += 1
        missing = sorted(set(required) - block.keys)
        if missing:
            problems.append(
                f"block {block.valid_from} ({iso(block.valid_from)}): the DNSKEY RRset "
                f"lacks {', '.join(k.short() for k in missing)}; a provider signing with it "
                "would serve data no resolver can validate")
    if not count:
        problems.append("the key set has no blocks")
    return problems
