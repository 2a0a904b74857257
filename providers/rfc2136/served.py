"""What the signer serves at the apex, and which DNSKEYs are its own.

The signer has no API to list its keys, so ownership is read from the served zone:
**a DNSKEY is the signer's own iff an RRSIG in the served zone verifies with it** (over
the DNSKEY RRset or the SOA). The controller only ever *adds* keys, it never signs with
them at this signer, so an added (foreign) key never carries a signature here. The check
is cryptographic, not by key tag: a foreign key whose tag collides with an own key's is
still foreign. A key the signer publishes before it signs with it (its own pre-published
successor) carries no signature; the adapter learns it is the signer's when the signer
puts it back after an UPDATE deleted it (``kept``); see docs/providers/rfc2136.md.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from core.keys import Digest, Key, Role, signers
from core.observation import ApiKey

APEX_TYPES = ("DNSKEY", "SOA", "CDS", "CDNSKEY", "NS", "CSYNC")


class NotServed(Exception):
    """The server does not serve the zone authoritatively (answer without AA, or an
    error rcode)."""


@dataclass
class Served:
    """One server's apex RRsets (each with its RRSIGs) for the zone."""

    zone: dns.name.Name
    rrsets: dict[str, dns.rrset.RRset] = field(default_factory=dict)
    rrsigs: dict[str, dns.rrset.RRset] = field(default_factory=dict)

    def texts(self, rrtype: str) -> set[str]:
        rrset = self.rrsets.get(rrtype)
        return {rd.to_text() for rd in rrset} if rrset is not None else set()

    @property
    def dnskeys(self) -> set[Key]:
        rrset = self.rrsets.get("DNSKEY")
        return {Key.from_rdata(rd) for rd in rrset} if rrset is not None else set()

    @property
    def cds(self) -> set[Digest]:
        rrset = self.rrsets.get("CDS")
        return {Digest.from_rdata(rd) for rd in rrset} if rrset is not None else set()

    @property
    def cdnskey(self) -> set[Key]:
        return {Key.parse(t) for t in self.texts("CDNSKEY")}

    def _signs(self, key: Key, rrtype: str) -> bool:
        rrset, sigs = self.rrsets.get(rrtype), self.rrsigs.get(rrtype)
        if rrset is None or sigs is None:
            return False
        # By signature (``signers`` verifies; a colliding tag cannot make a foreign key look
        # own), regardless of validity times: this asks who signs, not whether it is fresh.
        return bool(signers([key], rrset, sigs))

    def own_keys(self, kept: Set[Key] = frozenset()) -> list[ApiKey]:
        """Signing keys (active), and the served ``kept`` keys: ones the server put back
        after an UPDATE deleted them, i.e. keys it holds but does not sign with yet (its
        pre-published successors), reported as published, not active."""
        own: list[ApiKey] = []
        for key in sorted(self.dnskeys):
            signs_keys, signs_zone = self._signs(key, "DNSKEY"), self._signs(key, "SOA")
            if not (signs_keys or signs_zone or key in kept):
                continue
            role: Role = ("csk" if signs_zone else "ksk") if key.sep else "zsk"
            own.append(ApiKey(key=key, role=role, active=signs_keys or signs_zone,
                              published=True, key_id=key_handle(key)))
        return own

    def foreign_keys(self, kept: Set[Key] = frozenset()) -> set[Key]:
        return self.dnskeys - {k.key for k in self.own_keys(kept)}

    def ns(self) -> set[str]:
        return {t.lower() for t in self.texts("NS")}


def key_handle(key: Key) -> str:
    """A stable handle for a key the signer holds: tag plus fingerprint of the full
    DNSKEY, so two keys with one tag get two handles."""
    return f"{key.key_tag}-{key.fingerprint}"


def absorb(served: Served, rrtype: str, response: dns.message.Message) -> None:
    """Put one answer's RRset (and its RRSIGs) for ``rrtype`` into ``served``."""
    if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
        raise NotServed(f"{dns.rcode.to_text(response.rcode())}"
                        f"{'' if response.flags & dns.flags.AA else ', not authoritative'}")
    wanted = dns.rdatatype.from_text(rrtype)
    for rrset in response.answer:
        if rrset.name != served.zone:
            continue
        if rrset.rdtype == wanted:
            served.rrsets[rrtype] = rrset
        elif rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == wanted:
            served.rrsigs[rrtype] = rrset
