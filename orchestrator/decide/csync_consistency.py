"""Whether a parent follows a child's CSYNC (RFC 7477): pure, from what every address of
every delegated nameserver served.

Rules (docs/parent-agent.md, "Scanning"): every address answers and serves the same single
CSYNC record; its type bitmap names only NS, A and AAAA (a parent must process all the
types or none, RFC 7477 sec. 4.1); the *immediate* flag is set (without it sec. 2.1.1.1
wants an out-of-band approval); with *soaminimum*, every server's SOA serial is at least
the CSYNC serial; the zone did not change during the scan (same SOA serial before and
after); the parent holds a DS and every server's DNSKEY RRset is signed by a key it names,
with SOA, CSYNC, NS and glue validating under that DNSKEY RRset; the NS RRset (and, when
A/AAAA are in the bitmap, the addresses of in-bailiwick nameservers) is identical
everywhere; and every in-bailiwick nameserver keeps an address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dns.name
import dns.rdatatype
import dns.serial
from dns.rdtypes.ANY.CSYNC import CSYNC

from orchestrator.decide.cds_consistency import (
    NotValidated,
    Outcome,
    Signed,
    differing,
    parse_ds,
    texts,
    trusted_keys,
    validate_under,
)

CSYNC_IMMEDIATE = 0x0001
CSYNC_SOAMINIMUM = 0x0002
ALLOWED = frozenset({dns.rdatatype.NS, dns.rdatatype.A, dns.rdatatype.AAAA})


@dataclass(frozen=True)
class CsyncAnswers:
    """What one address of one child nameserver served for a CSYNC scan. ``glue``: for
    each in-bailiwick NS name, its (A, AAAA) as served."""

    server: str
    error: str | None = None
    serial_before: int = 0
    serial_after: int = 0
    soa: Signed = (None, None)
    csync: Signed = (None, None)
    ns: Signed = (None, None)
    dnskey: Signed = (None, None)
    glue: Mapping[str, tuple[Signed, Signed]] = field(default_factory=dict)


@dataclass(frozen=True)
class Delegation:
    """The parent's current NS RRset for the child and the addresses of its in-bailiwick
    nameservers (name -> (A texts, AAAA texts))."""

    ns: tuple[str, ...]
    ds: tuple[str, ...]
    glue: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class CsyncVerdict:
    outcome: Outcome
    reason: str
    ns: tuple[str, ...] = ()
    glue: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    servers: Mapping[str, str] = field(default_factory=dict)


def bitmap_types(rd: CSYNC) -> set[dns.rdatatype.RdataType]:
    """The types in a CSYNC type bitmap (RFC 4034 sec. 4.1.2 windows)."""
    found = set()
    for window, bitmap in rd.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    found.add(dns.rdatatype.RdataType.make(window * 256 + i * 8 + bit))
    return found


def in_bailiwick(child: dns.name.Name, names: Sequence[str]) -> list[str]:
    return [n for n in names if dns.name.from_text(n).is_subdomain(child)]


def _check_record(answers: Sequence[CsyncAnswers]) -> CSYNC | CsyncVerdict:
    """The one CSYNC record every server serves, or the verdict that stops the scan."""
    broken = {a.server: a.error for a in answers if a.error is not None}
    if broken:
        return CsyncVerdict("refuse", "not every nameserver answered", servers=broken)
    views = {a.server: texts(a.csync[0]) for a in answers}
    if not any(views.values()):
        return CsyncVerdict("ignore", "no CSYNC published")
    if diff := differing(views):
        return CsyncVerdict("refuse", "the nameservers serve different CSYNC RRsets",
                            servers=diff)
    rrset = answers[0].csync[0]
    if rrset is None or len(rrset) != 1 or not isinstance(rrset[0], CSYNC):
        return CsyncVerdict("refuse", "the CSYNC RRset must hold exactly one record")
    changed = {a.server: f"SOA serial {a.serial_before} -> {a.serial_after}"
               for a in answers if a.serial_before != a.serial_after}
    if changed:
        return CsyncVerdict("refuse", "the zone changed during the scan (RFC 7477 sec. 4.1); "
                            "the next scan tries again", servers=changed)
    record: CSYNC = rrset[0]
    return record


def _check_flags(record: CSYNC, answers: Sequence[CsyncAnswers]) -> CsyncVerdict | None:
    types = bitmap_types(record)
    if extra := types - ALLOWED:
        names = sorted(dns.rdatatype.to_text(t) for t in extra)
        return CsyncVerdict("refuse", f"CSYNC also asks for {', '.join(names)}: this parent "
                            "processes NS, A and AAAA only, and all or nothing")
    if not record.flags & CSYNC_IMMEDIATE:
        return CsyncVerdict("refuse", "CSYNC lacks the immediate flag: that needs an "
                            "out-of-band approval this parent cannot receive")
    if record.flags & CSYNC_SOAMINIMUM:
        low = {a.server: f"SOA serial {a.serial_before} < CSYNC serial {record.serial}"
               for a in answers
               if dns.serial.Serial(a.serial_before) < dns.serial.Serial(record.serial)}
        if low:
            return CsyncVerdict("refuse", "soaminimum not reached", servers=low)
    return None


def _validate(owner: dns.name.Name, answers: Sequence[CsyncAnswers],
              current_ds: Sequence[str], now: float) -> dict[str, str]:
    problems: dict[str, str] = {}
    parent_ds = parse_ds(current_ds)
    for a in answers:
        try:
            # Every RRset under the child's whole DNSKEY RRset (a ZSK signs them), that
            # RRset itself under a key the parent's DS names.
            trusted_keys(owner, a.dnskey, parent_ds, now)
            keys = a.dnskey[0]
            assert keys is not None  # trusted_keys refused a missing one
            for what, signed in (("SOA", a.soa), ("CSYNC", a.csync), ("NS", a.ns)):
                if signed[0] is None:
                    raise NotValidated(f"{what} RRset missing")
                validate_under(owner, what, signed, keys, now)
            for name, (v4, v6) in a.glue.items():
                validate_under(owner, f"{name} A", v4, keys, now)
                validate_under(owner, f"{name} AAAA", v6, keys, now)
        except NotValidated as exc:
            problems[a.server] = str(exc)
    return problems


def decide_csync(child: str, answers: Sequence[CsyncAnswers], current: Delegation,
                 now: float) -> CsyncVerdict:
    """Accept (with the new NS RRset and in-bailiwick glue), refuse or ignore."""
    owner = dns.name.from_text(child)
    if not answers:
        return CsyncVerdict("refuse", "the delegation has no nameserver address to ask")
    record = _check_record(answers)
    if isinstance(record, CsyncVerdict):
        return record
    if (stop := _check_flags(record, answers)) is not None:
        return stop
    types = bitmap_types(record)
    ns_views = {a.server: texts(a.ns[0]) for a in answers}
    if diff := differing(ns_views):
        return CsyncVerdict("refuse", "the nameservers serve different NS RRsets",
                            servers=diff)
    new_ns = tuple(n.lower() for n in ns_views[answers[0].server])
    if not new_ns:
        return CsyncVerdict("refuse", "the child serves no NS RRset")
    if not current.ds:
        return CsyncVerdict("refuse", "the parent holds no DS: CSYNC needs a validated "
                            "chain (RFC 7477 sec. 3)")
    if problems := _validate(owner, answers, current.ds, now):
        return CsyncVerdict("refuse", "not validated under the DS the parent holds at every "
                            "nameserver", servers=problems)
    glue = dict(current.glue)
    if types & {dns.rdatatype.A, dns.rdatatype.AAAA}:
        served = _served_glue(answers, in_bailiwick(owner, new_ns))
        if isinstance(served, CsyncVerdict):
            return served
        glue = served
    missing = [n for n in in_bailiwick(owner, new_ns) if not any(glue.get(n, ((), ())))]
    if missing:
        return CsyncVerdict("refuse", "in-bailiwick nameservers without an address: "
                            + ", ".join(missing))
    glue = {n: v for n, v in glue.items() if n in new_ns}
    ns_changes = dns.rdatatype.NS in types and new_ns != tuple(sorted(current.ns))
    if not ns_changes and glue == {n: v for n, v in current.glue.items() if n in new_ns}:
        return CsyncVerdict("ignore", "the delegation already matches", ns=new_ns)
    return CsyncVerdict("accept", f"NS {', '.join(new_ns)}: identical and validated at "
                        f"{len(answers)} nameserver addresses",
                        ns=new_ns if dns.rdatatype.NS in types else tuple(current.ns),
                        glue=glue)


def _served_glue(answers: Sequence[CsyncAnswers], names: Sequence[str]
                 ) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]] | CsyncVerdict:
    out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for name in names:
        views = {}
        for a in answers:
            v4, v6 = a.glue.get(name, ((None, None), (None, None)))
            views[a.server] = (texts(v4[0]), texts(v6[0]))
        flat = {s: v[0] + v[1] for s, v in views.items()}
        if diff := differing(flat):
            return CsyncVerdict("refuse", f"the nameservers serve different addresses for "
                                f"{name}", servers=diff)
        out[name] = views[answers[0].server]
    return out
