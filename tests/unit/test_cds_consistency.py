"""The parent agent's CDS/CDNSKEY and CSYNC decisions, on data dnspython really signs:
consistency across every server address, validation under the DS the parent holds
(RFC 7344 sec. 4.1), RFC 8078 delete, RFC 7477 flags and serials."""

from __future__ import annotations

from collections.abc import Sequence

import dns.dnssec
import dns.name
import dns.rdata
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import ec
from dns.rdtypes.ANY.DNSKEY import DNSKEY

from orchestrator.decide.cds_consistency import (
    DELETE_CDNSKEY,
    DELETE_CDS,
    ServerAnswers,
    Signed,
    decide_cds,
    ds_text,
)
from orchestrator.decide.csync_consistency import CsyncAnswers, Delegation, decide_csync

CHILD = "child.test."
OWNER = dns.name.from_text(CHILD)
NOW = 1_750_000_000.0
TTL = 300


class Key:
    def __init__(self, ksk: bool) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.dnskey: DNSKEY = dns.dnssec.make_dnskey(self.private.public_key(), 13,
                                                     257 if ksk else 256)

    def ds(self) -> str:
        return ds_text(dns.dnssec.make_ds(OWNER, self.dnskey, "SHA256"))


def rrset(rdtype: str, texts: Sequence[str], name: str = CHILD) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(name, TTL, "IN", rdtype, list(texts))


def sign(rr: dns.rrset.RRset | None, *keys: Key) -> Signed:
    if rr is None:
        return (None, None)
    sigs = [dns.dnssec.sign(rr, k.private, OWNER, k.dnskey, inception=NOW - 3600,
                            expiration=NOW + 86400) for k in keys]
    return rr, dns.rrset.from_rdata_list(rr.name, TTL, sigs)


def keyset(*keys: Key) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(OWNER, TTL, [k.dnskey for k in keys])


def server(name: str, dnskey: Signed, cds: Signed = (None, None),
           cdnskey: Signed = (None, None)) -> ServerAnswers:
    return ServerAnswers(name, dnskey=dnskey, cds=cds, cdnskey=cdnskey)


KSK, ZSK, NEW = Key(True), Key(False), Key(True)
CURRENT = [KSK.ds()]


def test_identical_and_validated_cds_is_accepted() -> None:
    keys = sign(keyset(KSK, ZSK, NEW), KSK)
    want = sorted([KSK.ds(), NEW.ds()])
    cds = sign(rrset("CDS", want), KSK)
    v = decide_cds(CHILD, [server("a", keys, cds), server("b", keys, cds)], CURRENT, NOW)
    assert v.outcome == "accept" and v.ds == tuple(want)


def test_cds_signed_only_by_a_key_the_ds_does_not_name_is_refused() -> None:
    # the DNSKEY RRset chains to the DS, but the CDS carries only the new KSK's signature
    keys = sign(keyset(KSK, ZSK, NEW), KSK, NEW)
    cds = sign(rrset("CDS", [NEW.ds()]), NEW)
    v = decide_cds(CHILD, [server("a", keys, cds)], CURRENT, NOW)
    assert v.outcome == "refuse"
    assert "CDS RRset not signed by a key the current DS names" in v.servers["a"]
    # the same CDS also signed by the current KSK passes
    both = sign(rrset("CDS", [NEW.ds()]), KSK, NEW)
    assert decide_cds(CHILD, [server("a", keys, both)], CURRENT, NOW).outcome == "accept"


def test_cds_signed_by_the_zsk_is_refused() -> None:
    keys = sign(keyset(KSK, ZSK, NEW), KSK)
    cds = sign(rrset("CDS", [KSK.ds(), NEW.ds()]), ZSK)
    assert decide_cds(CHILD, [server("a", keys, cds)], CURRENT, NOW).outcome == "refuse"


def test_keyset_signed_by_a_new_ksk_only_is_refused() -> None:
    keys = sign(keyset(KSK, ZSK, NEW), NEW)
    cds = sign(rrset("CDS", [NEW.ds()]), NEW)
    v = decide_cds(CHILD, [server("a", keys, cds)], CURRENT, NOW)
    assert v.outcome == "refuse" and "DNSKEY RRset not signed" in v.servers["a"]


def test_one_server_differs_or_is_down() -> None:
    keys = sign(keyset(KSK, ZSK, NEW), KSK)
    cds = sign(rrset("CDS", [KSK.ds(), NEW.ds()]), KSK)
    other = sign(rrset("CDS", [KSK.ds()]), KSK)
    v = decide_cds(CHILD, [server("a", keys, cds), server("b", keys, other)], CURRENT, NOW)
    assert v.outcome == "refuse" and set(v.servers) == {"a", "b"}
    down = ServerAnswers("b", error="timeout")
    v = decide_cds(CHILD, [server("a", keys, cds), down], CURRENT, NOW)
    assert v.outcome == "refuse" and v.servers == {"b": "timeout"}
    missing = decide_cds(CHILD, [server("a", keys, cds), server("b", keys)], CURRENT, NOW)
    assert missing.outcome == "refuse" and missing.servers["b"] == "(nothing)"


def test_nothing_published_or_already_in_effect_is_ignored() -> None:
    keys = sign(keyset(KSK, ZSK), KSK)
    assert decide_cds(CHILD, [server("a", keys)], CURRENT, NOW).outcome == "ignore"
    same = sign(rrset("CDS", CURRENT), KSK)
    assert decide_cds(CHILD, [server("a", keys, same)], CURRENT, NOW).outcome == "ignore"


def test_unsigned_delegation_is_not_bootstrapped_from_cds() -> None:
    keys = sign(keyset(KSK, ZSK), KSK)
    cds = sign(rrset("CDS", CURRENT), KSK)
    v = decide_cds(CHILD, [server("a", keys, cds)], [], NOW)
    assert v.outcome == "refuse" and "holds no DS" in v.reason


def test_rfc8078_delete() -> None:
    keys = sign(keyset(KSK, ZSK), KSK)
    delete = sign(rrset("CDS", [DELETE_CDS]), KSK)
    v = decide_cds(CHILD, [server("a", keys, delete)], CURRENT, NOW)
    assert v.outcome == "accept" and v.ds == ()
    key_delete = sign(rrset("CDNSKEY", [DELETE_CDNSKEY]), KSK)
    v = decide_cds(CHILD, [server("a", keys, delete, key_delete)], CURRENT, NOW)
    assert v.outcome == "accept" and v.ds == ()
    mixed = sign(rrset("CDS", [DELETE_CDS, KSK.ds()]), KSK)
    assert decide_cds(CHILD, [server("a", keys, mixed)], CURRENT, NOW).outcome == "refuse"


def test_cdnskey_alone_and_with_a_cds_that_disagrees() -> None:
    keys = sign(keyset(KSK, ZSK, NEW), KSK)
    cdnskey = sign(rrset("CDNSKEY", [k.dnskey.to_text() for k in (KSK, NEW)]), KSK)
    v = decide_cds(CHILD, [server("a", keys, cdnskey=cdnskey)], CURRENT, NOW)
    assert v.outcome == "accept" and v.ds == tuple(sorted([KSK.ds(), NEW.ds()]))
    cds = sign(rrset("CDS", [KSK.ds()]), KSK)
    v = decide_cds(CHILD, [server("a", keys, cds, cdnskey)], CURRENT, NOW)
    assert v.outcome == "refuse" and "has no CDS" in v.reason


def test_a_ds_that_would_break_the_chain_is_refused() -> None:
    keys = sign(keyset(KSK, ZSK, NEW), KSK)
    cds = sign(rrset("CDS", [NEW.ds()]), KSK)  # NEW does not sign the DNSKEY RRset
    v = decide_cds(CHILD, [server("a", keys, cds)], CURRENT, NOW)
    assert v.outcome == "refuse" and "would break the chain" in v.servers["a"]


def csync_server(name: str, csync: str | None, ns: Sequence[str], *, serial: int = 10,
                 after: int | None = None, glue: dict[str, Sequence[str]] | None = None,
                 ) -> CsyncAnswers:
    keys = sign(keyset(KSK, ZSK), KSK)
    soa = sign(rrset("SOA", [f"ns1.{CHILD} h.{CHILD} {serial} 1 1 1 1"]), ZSK)
    served = {n: (sign(rrset("A", list(v), n), ZSK), (None, None))
              for n, v in (glue or {}).items()}
    return CsyncAnswers(name, serial_before=serial,
                        serial_after=serial if after is None else after, soa=soa,
                        csync=sign(rrset("CSYNC", [csync]), ZSK) if csync else (None, None),
                        ns=sign(rrset("NS", list(ns)), ZSK), dnskey=keys, glue=served)


DELEG = Delegation(ns=("ns1.a.example.",), ds=tuple(CURRENT))


def test_csync_accepted_and_refusals() -> None:
    new = ["ns1.a.example.", "ns1.b.example."]
    ok = [csync_server(s, "0 3 NS", new) for s in "ab"]
    v = decide_csync(CHILD, ok, DELEG, NOW)
    assert v.outcome == "accept" and v.ns == tuple(new)
    cases = {
        "lacks the immediate flag": [csync_server("a", "0 2 NS", new)],
        "processes NS, A and AAAA only": [csync_server("a", "0 3 NS TXT", new)],
        "soaminimum": [csync_server("a", "11 3 NS", new)],
        "changed during the scan": [csync_server("a", "0 3 NS", new, after=11)],
        "different CSYNC": [csync_server("a", "0 3 NS", new), csync_server("b", None, new)],
        "different NS": [csync_server("a", "0 3 NS", new),
                         csync_server("b", "0 3 NS", new[:1])],
    }
    for why, answers in cases.items():
        v = decide_csync(CHILD, answers, DELEG, NOW)
        assert v.outcome == "refuse" and why in v.reason, (why, v)
    unsigned = Delegation(ns=DELEG.ns, ds=())
    assert decide_csync(CHILD, ok, unsigned, NOW).outcome == "refuse"
    assert decide_csync(CHILD, [csync_server("a", None, new)], DELEG, NOW).outcome == "ignore"


def test_csync_in_bailiwick_glue() -> None:
    inside = f"ns1.{CHILD}"
    new = ["ns1.a.example.", inside]
    without = [csync_server("a", "0 3 NS", new)]
    v = decide_csync(CHILD, without, DELEG, NOW)
    assert v.outcome == "refuse" and "without an address" in v.reason
    with_glue = [csync_server("a", "0 3 NS A", new, glue={inside: ["192.0.2.53"]})]
    v = decide_csync(CHILD, with_glue, DELEG, NOW)
    assert v.outcome == "accept" and v.glue == {inside: (("192.0.2.53",), ())}


def test_rdata_text_stays_stable() -> None:
    assert dns.rdata.from_text("IN", "CDS", DELETE_CDS).to_text() == "0 0 0 00"
