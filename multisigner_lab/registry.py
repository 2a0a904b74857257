"""The lab registry's data: what the parent zone holds for each child (parsed from the
PowerDNS API's view of ``test.``), what a child nameserver answered, and the DS/CDS/CSYNC
record helpers the scanner (:mod:`multisigner_lab.scanner`) decides with."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from multisigner_lab import dnsq

CSYNC_IMMEDIATE = 0x0001  # RFC 7477 sec. 2.1.1.1
CSYNC_SOAMINIMUM = 0x0002
CSYNC_TYPES = frozenset({dns.rdatatype.NS, dns.rdatatype.A, dns.rdatatype.AAAA})

Addr = tuple[str, int]


def ds_text(rd: Any) -> str:
    """DS/CDS rdata in the one-token-digest form the PowerDNS API stores."""
    return f"{rd.key_tag} {rd.algorithm} {rd.digest_type} {rd.digest.hex()}"


def is_delete(cds: dns.rrset.RRset) -> bool:
    """RFC 8078 sec. 4: a CDS RRset of the single record ``0 0 0 00`` asks for removal."""
    return len(cds) == 1 and all(rd.algorithm == 0 and rd.key_tag == 0 for rd in cds)


@functools.lru_cache(maxsize=65536)
def norm_name(text: str) -> str:
    """An absolute, lowercase domain name in text form (the parent's and the lab's)."""
    return dns.name.from_text(text).to_text().lower()


@functools.lru_cache(maxsize=65536)
def ds_rdata(text: str) -> Any:
    """A DS rdata from the parent's API text (cached: the parent zone is read each round)."""
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, text)


def ns_names(rrset: dns.rrset.RRset) -> tuple[str, ...]:
    return tuple(sorted({rd.target.to_text().lower() for rd in rrset}))


def bitmap_types(rd: Any) -> set[dns.rdatatype.RdataType]:
    """The types in a CSYNC (or NSEC) type bitmap (RFC 4034 sec. 4.1.2 windows)."""
    found = set()
    for window, bitmap in rd.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    found.add(dns.rdatatype.RdataType.make(window * 256 + i * 8 + bit))
    return found


class CannotActError(Exception):
    """This zone cannot be acted on this round (the message says why)."""


@dataclass(frozen=True)
class Delegation:
    """What the parent holds for one child zone, from its own database."""

    ns: tuple[str, ...]  # NS target names, sorted, lowercase, absolute
    ds: tuple[Any, ...]  # DS rdatas


@dataclass(frozen=True)
class ParentZone:
    children: Mapping[str, Delegation]
    hosts: frozenset[str]  # names with an A/AAAA record in the parent zone (host objects)


@dataclass(frozen=True)
class ChildData:
    """What one child nameserver answered during a CSYNC scan (RRsets with their RRSIGs)."""

    serial: int
    soa: tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]
    csync: tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]
    ns: tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]
    keys: tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]


def with_sig(resp: dns.message.Message, zone: str, rdtype: str) -> tuple[Any, Any]:
    return dnsq.answer(resp, zone, rdtype), dnsq.answer(resp, zone, "RRSIG", covers=rdtype)


def parse_parent_zone(data: Mapping[str, Any], zones: Sequence[str]) -> ParentZone:
    """The registry's view from ``GET /zones/test.`` (disabled records ignored)."""
    wanted = {norm_name(z) for z in zones}
    ns: dict[str, list[str]] = {}
    ds: dict[str, list[Any]] = {}
    hosts: set[str] = set()
    for rrset in data.get("rrsets", []):
        owner = norm_name(str(rrset["name"]))
        rtype = str(rrset["type"])
        contents = [str(r["content"]) for r in rrset["records"] if not r.get("disabled")]
        if not contents:
            continue
        if rtype in ("A", "AAAA"):
            hosts.add(owner)
        elif rtype == "NS" and owner in wanted:
            ns[owner] = [norm_name(c) for c in contents]
        elif rtype == "DS" and owner in wanted:
            ds[owner] = [ds_rdata(c) for c in contents]
    children = {
        z: Delegation(tuple(sorted(set(names))), tuple(ds.get(z, []))) for z, names in ns.items()
    }
    return ParentZone(children, frozenset(hosts))


def ds_matches(name: dns.name.Name, key: Any, ds: Any) -> bool:
    try:
        return bool(dns.dnssec.make_ds(name, key, ds.digest_type) == ds)
    except (dns.exception.UnsupportedAlgorithm, ValueError):
        return False
