"""Whether a parent accepts a child's CDS/CDNSKEY (RFC 7344, RFC 8078): pure, from what
every nameserver of the child served at every one of its addresses.

The rules (docs/parent-agent.md, "Scanning"):

* every address of every delegated nameserver must answer, and all must serve the same
  CDS and the same CDNSKEY RRset (the consistency rule of draft-ietf-dnsop-cds-consistency:
  one stale or hijacked server is enough to refuse);
* a CDS and a CDNSKEY RRset served together must describe the same keys;
* the parent must already hold a DS for the child: the chain of trust the answers are
  validated under (bootstrapping an unsigned delegation from CDS is refused here);
* at every address, the DNSKEY RRset must be signed by a key a current DS names, and the
  CDS/CDNSKEY RRsets must be signed by such a key too (RFC 7344 sec. 4.1: a CDS signed
  only by a key the current DS does not name, e.g. a brand-new KSK, is refused);
* the new DS RRset must name a key that signs the child's DNSKEY RRset (else applying it
  would make the child bogus), unless it is the RFC 8078 delete request.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.dnskeybase import DNSKEYBase

Outcome = Literal["accept", "refuse", "ignore"]
Signed = tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]  # (RRset, its RRSIGs)

DELETE_CDS = "0 0 0 00"
DELETE_CDNSKEY = "0 3 0 AA=="


@dataclass(frozen=True)
class ServerAnswers:
    """What one address of one child nameserver served (``error`` when it did not answer
    usably: a timeout, a non-NOERROR rcode, a non-authoritative answer)."""

    server: str  # "ns1.child.example.@192.0.2.1:53"
    error: str | None = None
    dnskey: Signed = (None, None)
    cds: Signed = (None, None)
    cdnskey: Signed = (None, None)


@dataclass(frozen=True)
class Verdict:
    """The decision: ``ds`` is the parent's new DS RRset (presentation texts, empty for a
    delete) when ``outcome`` is "accept"; ``servers`` names the servers the reason is about."""

    outcome: Outcome
    reason: str
    ds: tuple[str, ...] = ()
    servers: Mapping[str, str] = field(default_factory=dict)


def ds_text(rd: DS) -> str:
    """One canonical DS text (lower-case hex digest in one token)."""
    return f"{rd.key_tag} {rd.algorithm} {rd.digest_type} {rd.digest.hex()}"


def parse_ds(texts: Sequence[str]) -> list[DS]:
    """DS rdatas from presentation texts (the parent's current RRset)."""
    out = []
    for text in texts:
        rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, text)
        assert isinstance(rd, DS)
        out.append(rd)
    return out


def ds_matches(owner: dns.name.Name, key: DNSKEYBase, ds: DS) -> bool:
    """Whether ``ds`` names ``key`` (a digest type we cannot compute matches nothing)."""
    if key.protocol != 3 or key.algorithm != ds.algorithm:
        return False
    try:
        made = dns.dnssec.make_ds(owner, key, ds.digest_type)
    except (dns.exception.DNSException, ValueError):
        return False
    return made.key_tag == ds.key_tag and made.digest == ds.digest


def texts(rrset: dns.rrset.RRset | None) -> tuple[str, ...]:
    """The records of an RRset as sorted canonical texts (() when absent)."""
    if rrset is None:
        return ()
    return tuple(sorted(ds_text(rd) if isinstance(rd, DS) else _one_token(rd) for rd in rrset))


def _one_token(rd: dns.rdata.Rdata) -> str:
    if isinstance(rd, DNSKEYBase):  # dnspython splits the base64 key; one token compares stably
        return f"{rd.flags} {rd.protocol} {rd.algorithm} {base64.b64encode(rd.key).decode()}"
    return str(rd.to_text())


class NotValidated(Exception):
    """An RRset did not validate; the message says why."""


def trusted_keys(owner: dns.name.Name, dnskey: Signed, parent_ds: Sequence[DS],
                 now: float) -> dns.rrset.RRset:
    """The DNSKEYs a current DS names, after checking they sign the DNSKEY RRset
    (RFC 7344 sec. 4.1: the chain of trust the parent already holds)."""
    keys, sigs = dnskey
    if not keys or not sigs:
        raise NotValidated("DNSKEY RRset unsigned or missing")
    named = [k for k in keys if isinstance(k, DNSKEY)
             and any(ds_matches(owner, k, ds) for ds in parent_ds)]
    if not named:
        raise NotValidated("no DNSKEY matches a DS the parent holds")
    anchor = dns.rrset.from_rdata_list(owner, keys.ttl, named)
    try:
        dns.dnssec.validate(keys, sigs, {owner: anchor}, now=now)
    except dns.exception.ValidationFailure as exc:
        raise NotValidated(f"DNSKEY RRset not signed by a key the DS names ({exc})") from None
    return anchor


def validate_under(owner: dns.name.Name, what: str, signed: Signed,
                   keys: dns.rrset.RRset, now: float) -> None:
    rrset, sigs = signed
    if rrset is None:
        return
    if not sigs:
        raise NotValidated(f"{what} RRset is unsigned")
    try:
        dns.dnssec.validate(rrset, sigs, {owner: keys}, now=now)
    except dns.exception.ValidationFailure as exc:
        raise NotValidated(f"{what} RRset not signed by a key the current DS names "
                           f"({exc})") from None


def differing(views: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """Server -> what it served, when not all served the same (else empty)."""
    if len(set(views.values())) <= 1:
        return {}
    return {server: ", ".join(v) or "(nothing)" for server, v in sorted(views.items())}


def _wanted_ds(owner: dns.name.Name, cds: tuple[str, ...],
               cdnskey: dns.rrset.RRset | None) -> tuple[str, ...] | str:
    """The DS set the child asks for, () for a delete; a str says why it is refused."""
    key_texts = texts(cdnskey)
    if DELETE_CDS in cds or DELETE_CDNSKEY in key_texts:
        if cds not in ((), (DELETE_CDS,)) or key_texts not in ((), (DELETE_CDNSKEY,)):
            return "a delete request (RFC 8078) mixed with other CDS/CDNSKEY records"
        return ()
    if cdnskey is None:
        return cds
    keys = [k for k in cdnskey if isinstance(k, DNSKEYBase)]
    if not cds:
        return tuple(sorted(ds_text(dns.dnssec.make_ds(owner, k, "SHA256")) for k in keys))
    for text in cds:
        (ds,) = parse_ds([text])
        if not any(ds_matches(owner, k, ds) for k in keys):
            return f"CDS {text} names no key of the CDNSKEY RRset"
    for key in keys:
        if not any(ds_matches(owner, key, ds) for ds in parse_ds(cds)):
            return f"CDNSKEY {_one_token(key)} has no CDS"
    return cds


def decide_cds(child: str, answers: Sequence[ServerAnswers], current_ds: Sequence[str],
               now: float) -> Verdict:
    """Accept, refuse or ignore what ``answers`` (every address of every delegated
    nameserver of ``child``) serve, given the parent's ``current_ds`` texts."""
    owner = dns.name.from_text(child)
    if not answers:
        return Verdict("refuse", "the delegation has no nameserver address to ask")
    broken = {a.server: a.error for a in answers if a.error is not None}
    if broken:
        return Verdict("refuse", "not every nameserver answered", servers=broken)
    cds_views = {a.server: texts(a.cds[0]) for a in answers}
    key_views = {a.server: texts(a.cdnskey[0]) for a in answers}
    for what, views in (("CDS", cds_views), ("CDNSKEY", key_views)):
        if diff := differing(views):
            return Verdict("refuse", f"the nameservers serve different {what} RRsets",
                           servers=diff)
    first = answers[0]
    cds = cds_views[first.server]
    if not cds and not key_views[first.server]:
        return Verdict("ignore", "no CDS or CDNSKEY published")
    wanted = _wanted_ds(owner, cds, first.cdnskey[0])
    if isinstance(wanted, str):
        return Verdict("refuse", wanted)
    current = tuple(sorted(ds_text(d) for d in parse_ds(current_ds)))
    if wanted == current:
        return Verdict("ignore", "the DS RRset already matches", ds=wanted)
    if not current:
        return Verdict("refuse", "the parent holds no DS for this child: a CDS cannot be "
                       "validated (an unsigned delegation is not bootstrapped from CDS)")
    problems = _validate_everywhere(owner, answers, parse_ds(current_ds), wanted, now)
    if problems:
        return Verdict("refuse", "not validated under the DS the parent holds at every "
                       "nameserver", servers=problems)
    change = "delete the DS RRset (RFC 8078)" if not wanted else "DS " + "; ".join(wanted)
    return Verdict("accept", f"{change}: identical and validated at {len(answers)} "
                   "nameserver addresses", ds=wanted)


def _validate_everywhere(owner: dns.name.Name, answers: Sequence[ServerAnswers],
                         parent_ds: Sequence[DS], wanted: tuple[str, ...],
                         now: float) -> dict[str, str]:
    problems: dict[str, str] = {}
    new_ds = parse_ds(wanted)
    for answer in answers:
        try:
            anchor = trusted_keys(owner, answer.dnskey, parent_ds, now)
            validate_under(owner, "CDS", answer.cds, anchor, now)
            validate_under(owner, "CDNSKEY", answer.cdnskey, anchor, now)
            if new_ds:
                _new_ds_signs_keys(owner, answer.dnskey, new_ds, now)
        except NotValidated as exc:
            problems[answer.server] = str(exc)
    return problems


def _new_ds_signs_keys(owner: dns.name.Name, dnskey: Signed, new_ds: Sequence[DS],
                       now: float) -> None:
    """The new DS must name a served key that signs the DNSKEY RRset."""
    try:
        trusted_keys(owner, dnskey, new_ds, now)
    except NotValidated as exc:
        raise NotValidated(f"the requested DS would break the chain: {exc}") from None
