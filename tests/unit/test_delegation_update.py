"""core/delegation_update: the UPDATEs a child sends its parent (replace semantics)."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
import pytest
from dns.rdtypes.ANY.DS import DS

from core.delegation_update import delegation_update, key_bootstrap
from core.sig0 import Sig0Key, parse, sign, verify

N = dns.name.from_text
PARENT, CHILD = N("test."), N("child.test.")


def _ds(tag: int) -> DS:
    rd = dns.rdata.from_text("IN", "DS", f"{tag} 13 2 " + "ab" * 32)
    assert isinstance(rd, DS)
    return rd


def _changes(update: dns.update.UpdateMessage) -> list[tuple[str, str, str, list[str]]]:
    """(name, class, type, rdatas) per change, in order, as received on the wire (a
    delete is class ANY without rdata); consecutive adds to one RRset are merged."""
    received = dns.message.from_wire(update.to_wire())
    out: list[tuple[str, str, str, list[str]]] = []
    for r in received.update:
        rdclass = dns.rdataclass.to_text(r.deleting if r.deleting is not None else r.rdclass)
        key = (r.name.to_text(), rdclass, dns.rdatatype.to_text(r.rdtype))
        rdatas = [rd.to_text() for rd in r]
        if out and out[-1][:3] == key and rdatas:
            out[-1] = (*key, sorted(out[-1][3] + rdatas))
        else:
            out.append((*key, sorted(rdatas)))
    return out


def test_ds_replace() -> None:
    update = delegation_update(PARENT, CHILD, ds=[_ds(1), _ds(2)], ttl=600)
    assert update.zone[0].name == PARENT
    assert _changes(update) == [
        ("child.test.", "ANY", "DS", []),  # delete the RRset
        ("child.test.", "IN", "DS", sorted([_ds(1).to_text(), _ds(2).to_text()])),
    ]
    assert update.update[1].ttl == 600


def test_ns_and_in_bailiwick_glue() -> None:
    update = delegation_update(
        PARENT, CHILD, ns=[N("ns1.child.test."), N("ns.example.")],
        glue={N("ns1.child.test."): ["192.0.2.1", "2001:db8::1"], N("old.child.test."): []})
    assert _changes(update) == [
        ("child.test.", "ANY", "NS", []),
        ("child.test.", "IN", "NS", ["ns.example.", "ns1.child.test."]),
        ("ns1.child.test.", "ANY", "A", []),
        ("ns1.child.test.", "ANY", "AAAA", []),
        ("ns1.child.test.", "IN", "A", ["192.0.2.1"]),
        ("ns1.child.test.", "IN", "AAAA", ["2001:db8::1"]),
        ("old.child.test.", "ANY", "A", []),
        ("old.child.test.", "ANY", "AAAA", []),
    ]


def test_refusals() -> None:
    with pytest.raises(ValueError, match="out of bailiwick"):
        delegation_update(PARENT, CHILD, glue={N("ns.other.test."): ["192.0.2.1"]})
    with pytest.raises(ValueError, match="empty NS RRset"):
        delegation_update(PARENT, CHILD, ns=[])
    with pytest.raises(ValueError, match="nothing to change"):
        delegation_update(PARENT, CHILD)
    with pytest.raises(ValueError, match="not a child of"):
        delegation_update(PARENT, N("child.example."), ds=[])
    with pytest.raises(ValueError):
        delegation_update(PARENT, CHILD, glue={N("ns1.child.test."): ["not-an-ip"]})


def test_empty_ds_deletes_only() -> None:
    assert _changes(delegation_update(PARENT, CHILD, ds=[])) == [
        ("child.test.", "ANY", "DS", [])]


def test_key_bootstrap_is_self_signed_and_verifies() -> None:
    key = Sig0Key.generate(CHILD)
    update = key_bootstrap(PARENT, CHILD, key.key_rdata())
    assert _changes(update) == [("child.test.", "ANY", "KEY", []),
                                ("child.test.", "IN", "KEY", [key.key_rdata().to_text()])]
    signed = parse(sign(update.to_wire(), key, now=1_790_000_000))
    # The receiver can verify it with the KEY the UPDATE itself carries.
    carried = [rd for rrset in signed.message.update if rrset.rdtype == dns.rdatatype.KEY
               for rd in rrset]
    verify(signed, carried, now=1_790_000_000, name=CHILD)  # type: ignore[arg-type]
