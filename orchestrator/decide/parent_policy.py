"""Which changes a child may make to its delegation by DNS UPDATE (RFC 2136), pure.

A child authenticated as ``child.`` may change only its own delegation in the parent:
the DS and NS RRsets at its apex and the addresses (A, AAAA) of nameservers inside its
own name (in-bailiwick glue), plus the KEY RRset at its apex (its SIG(0) key, which the
agent keeps as trust, not as zone data). Anything else (another child's records, the
parent's own, out-of-bailiwick glue, other types, deleting every RRset at a name) is
refused as a whole: an UPDATE is applied completely or not at all. The result must still be
a working delegation: a non-empty NS RRset, and an address for every in-bailiwick
nameserver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from orchestrator.decide.cds_consistency import texts

Op = Literal["add", "delete-rrset", "delete-rr", "delete-name"]
RRKey = tuple[str, str]  # (owner name, type)

APEX_TYPES = frozenset({"DS", "NS", "KEY"})
GLUE_TYPES = frozenset({"A", "AAAA"})


@dataclass(frozen=True)
class Change:
    """One update-section RR in RFC 2136 sec. 2.5 terms."""

    op: Op
    name: str
    rdtype: str
    ttl: int = 0
    rdata: str | None = None  # canonical text for "add" and "delete-rr"

    def text(self) -> str:
        return f"{self.op} {self.name} {self.rdtype}" + (f" {self.rdata}" if self.rdata else "")


@dataclass(frozen=True)
class PolicyVerdict:
    allowed: bool
    reason: str
    touched: tuple[RRKey, ...] = ()


class BadUpdate(ValueError):
    """An update-section RR that RFC 2136 sec. 3.4.1 calls a FORMERR."""


def changes_of(update: Sequence[dns.rrset.RRset], zone_class: int = dns.rdataclass.IN
               ) -> list[Change]:
    """The update section as changes; BadUpdate for an RR RFC 2136 does not allow."""
    out: list[Change] = []
    for rrset in update:
        name = rrset.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(rrset.rdtype)
        deleting = rrset.deleting
        if deleting is None and rrset.rdclass == zone_class:
            if rrset.rdtype in (dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR):
                raise BadUpdate(f"cannot add records of type {rdtype}")
            out += [Change("add", name, rdtype, rrset.ttl, _canon(rd)) for rd in rrset]
        elif deleting == dns.rdataclass.ANY:
            if len(rrset) or rrset.ttl:
                raise BadUpdate(f"a class ANY delete of {name} {rdtype} must be empty, TTL 0")
            op: Op = "delete-name" if rrset.rdtype == dns.rdatatype.ANY else "delete-rrset"
            out.append(Change(op, name, rdtype))
        elif deleting == dns.rdataclass.NONE:
            if rrset.ttl:
                raise BadUpdate(f"a class NONE delete of {name} {rdtype} must have TTL 0")
            out += [Change("delete-rr", name, rdtype, 0, _canon(rd)) for rd in rrset]
        else:
            raise BadUpdate(f"{name} {rdtype}: class "
                            f"{dns.rdataclass.to_text(rrset.rdclass)} is not the zone's")
    return out


def _canon(rd: dns.rdata.Rdata) -> str:
    rrset = dns.rrset.from_rdata_list(dns.name.root, 0, [rd])
    return texts(rrset)[0]


def check(parent: str, child: str, delegations: Sequence[str], changes: Sequence[Change]
          ) -> PolicyVerdict:
    """Whether ``child`` (the zone its key belongs to) may make ``changes`` to ``parent``,
    whose delegated children are ``delegations``."""
    apex = dns.name.from_text(child)
    parent_name = dns.name.from_text(parent)
    if not apex.is_subdomain(parent_name) or apex == parent_name:
        return PolicyVerdict(False, f"{child} is not below {parent}")
    if child.lower() not in {d.lower() for d in delegations}:
        return PolicyVerdict(False, f"{child} is not delegated from {parent}")
    if not changes:
        return PolicyVerdict(False, "the UPDATE changes nothing")
    others = [d for d in delegations if d.lower() != child.lower()]
    touched: list[RRKey] = []
    for change in changes:
        problem = _one(apex, others, change)
        if problem:
            return PolicyVerdict(False, f"{change.text()}: {problem}")
        if (change.name, change.rdtype) not in touched:
            touched.append((change.name, change.rdtype))
    return PolicyVerdict(True, "every change is inside the delegation", tuple(touched))


def _one(apex: dns.name.Name, others: Sequence[str], change: Change) -> str | None:
    name = dns.name.from_text(change.name)
    if not name.is_subdomain(apex):
        return f"outside the delegation of {apex.to_text()}"
    if change.op == "delete-name":
        return "deleting every RRset at a name is not allowed; name the type"
    for other in others:  # a grandchild delegated by the parent directly is not ours
        if name.is_subdomain(dns.name.from_text(other)):
            return f"inside another delegation ({other})"
    if name == apex:
        if change.rdtype not in APEX_TYPES:
            return f"a child may change only {', '.join(sorted(APEX_TYPES))} at its apex"
        return None
    if change.rdtype not in GLUE_TYPES:
        return "below the apex a child may change only A/AAAA (in-bailiwick glue)"
    return None


def apply(current: Mapping[RRKey, frozenset[str]], changes: Sequence[Change]
          ) -> dict[RRKey, frozenset[str]]:
    """The RRsets the changes touch, after the changes (RFC 2136 sec. 3.4.2 order)."""
    result: dict[RRKey, set[str]] = {}
    for change in changes:
        key = (change.name, change.rdtype)
        records = result.setdefault(key, set(current.get(key, frozenset())))
        if change.op == "add" and change.rdata is not None:
            records.add(change.rdata)
        elif change.op == "delete-rrset":
            records.clear()
        elif change.op == "delete-rr" and change.rdata is not None:
            records.discard(change.rdata)
    return {key: frozenset(v) for key, v in result.items()}


def check_result(child: str, after: Mapping[RRKey, frozenset[str]],
                 glue_after: Mapping[str, bool]) -> str | None:
    """Why the delegation the changes leave would not work (None: it would).
    ``glue_after``: for every in-bailiwick NS name, whether it has an address after."""
    apex = child.lower()
    ns = after.get((apex, "NS"))
    if ns is not None and not ns:
        return "the NS RRset would be empty (a delegation needs nameservers)"
    missing = sorted(n for n, ok in glue_after.items() if not ok)
    if missing:
        return "in-bailiwick nameservers left without an address: " + ", ".join(missing)
    return None


def ns_targets(records: frozenset[str]) -> list[str]:
    """The nameserver names of NS texts, lower-case absolute."""
    out = []
    for text in records:
        try:
            out.append(dns.name.from_text(text).to_text().lower())
        except dns.exception.DNSException:
            continue
    return sorted(out)
