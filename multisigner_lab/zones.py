"""Zone content of the lab as PowerDNS API rrsets, and DNSKEY/DS text helpers.

Every TTL is the lab TTL (2 s by default), so a short lab TTL makes every wait in a test
short. A lab may give the DNSKEY RRset a TTL of its own (``dnskey_ttl``): PowerDNS 4.7
serves the DNSKEY RRset (and the CDS/CDNSKEY it makes) with the SOA *minimum* as TTL,
whatever TTL a DNSKEY RRset was stored with, so the SOA minimum is the DNSKEY TTL, while
the SOA's own TTL and every other RRset keep the data TTL. Negative answers are then
cached for min(SOA TTL, SOA minimum).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.DNSKEY import DNSKEY

PARENT_ZONE = "test."
PARENT_NS = "ns.test."


def ns_name(provider: str) -> str:
    """The NS hostname delegating to a provider: ``ns1.p0.test.``."""
    return f"ns1.{provider}.{PARENT_ZONE}"


def rrset(name: str, rtype: str, ttl: int, contents: Iterable[str]) -> dict[str, Any]:
    """One rrset in the PowerDNS API shape (POST /zones and PATCH with changetype)."""
    return {
        "name": name,
        "type": rtype,
        "ttl": ttl,
        "records": [{"content": c, "disabled": False} for c in contents],
    }


def soa(zone: str, mname: str, ttl: int, minimum: int | None = None) -> dict[str, Any]:
    # Serial 1: PowerDNS' SOA-EDIT-API=DEFAULT turns it into YYYYMMDDnn and bumps it on
    # every API change, as a real deployment would. Minimum: the DNSKEY TTL at PowerDNS
    # (see module doc), default the TTL.
    low = ttl if minimum is None else minimum
    return rrset(zone, "SOA", ttl, [f"{mname} hostmaster.{zone} 1 3600 600 86400 {low}"])


def child_rrsets(
    zone: str, ns_names: list[str], ttl: int, dnskey_ttl: int | None = None
) -> list[dict[str, Any]]:
    """The child zone as every provider serves it (identical content everywhere): every
    RRset with TTL ``ttl``, the SOA minimum ``dnskey_ttl`` (default ``ttl``)."""
    return [
        soa(zone, ns_names[0], ttl, dnskey_ttl),
        rrset(zone, "NS", ttl, ns_names),
        rrset(zone, "A", ttl, ["192.0.2.1"]),
        rrset(zone, "MX", ttl, [f"10 mail.{zone}"]),
        rrset(zone, "TXT", ttl, ['"multisigner lab zone"']),
        rrset(f"www.{zone}", "A", ttl, ["192.0.2.10"]),
        rrset(f"mail.{zone}", "A", ttl, ["192.0.2.25"]),
    ]


def parent_rrsets(
    parent_address: str,
    glue: Mapping[str, str],
    children: Mapping[str, list[str]],
    ds: Mapping[str, list[str]],
    *,
    ttl: int,
    ds_ttl: int,
    ns_ttl: int | None = None,
) -> list[dict[str, Any]]:
    """The parent zone ``test.``: its own apex, an A record per provider nameserver
    (``glue``: ns name -> address), and per child zone its NS RRset (``children``: zone ->
    the ns names it is delegated to; TTL ``ns_ttl``, default ``ttl``) and DS RRset.

    Every provider's A record is there whether a child is delegated to it or not: they are
    ordinary records of ``test.`` (host objects, in registry terms), so a later NS change
    (CSYNC) never needs new glue."""
    sets = [
        soa(PARENT_ZONE, PARENT_NS, ttl),
        rrset(PARENT_ZONE, "NS", ttl, [PARENT_NS]),
        rrset(PARENT_NS, "A", ttl, [parent_address]),
    ]
    sets += [rrset(name, "A", ttl, [addr]) for name, addr in glue.items()]
    for zone, names in children.items():
        sets.append(rrset(zone, "NS", ttl if ns_ttl is None else ns_ttl, names))
        if ds.get(zone):
            sets.append(rrset(zone, "DS", ds_ttl, ds[zone]))
    return sets


def parse_dnskey(text: str) -> DNSKEY:
    """A DNSKEY from presentation text (``"257 3 13 base64..."``)."""
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, text)
    if not isinstance(rd, DNSKEY):  # pragma: no cover - from_text returns the class asked
        raise TypeError(f"not a DNSKEY: {text}")
    return rd


def dnskey_token(key: DNSKEY) -> str:
    """Canonical one-token form the PowerDNS API accepts: dnspython's ``to_text()`` breaks
    the base64 key with spaces, which the API rejects with 422 "Not in expected format"."""
    flags, proto, alg, *b64 = key.to_text().split()
    return f"{flags} {proto} {alg} {''.join(b64)}"


def ds_text(zone: str, key: DNSKEY | str, digest: str = "SHA256") -> str:
    """DS presentation text for a KSK, digest in one lowercase hex token (PowerDNS API and
    DNSViz ``-D`` want no spaces)."""
    rd = parse_dnskey(key) if isinstance(key, str) else key
    ds = dns.dnssec.make_ds(dns.name.from_text(zone), rd, digest)
    return f"{ds.key_tag} {ds.algorithm} {ds.digest_type} {ds.digest.hex()}"
