"""orchestrator.decide.owner_signing.build_keyset: the provider-neutral signed key set the
owner hands every Model 1 provider, built and signed without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import ec

from core.config import PolicyConfig
from core.keys import Key
from core.keyset import lacking_keys
from orchestrator.decide.owner_signing import BACKDATE, Model1Target, build_keyset

ZONE = "example.test."
ORIGIN = dns.name.from_text(ZONE)
NOW = datetime(2026, 11, 25, 13, 15, 33, tzinfo=UTC)


def key(flags: int) -> tuple[ec.EllipticCurvePrivateKey, Key]:
    private = ec.generate_private_key(ec.SECP256R1())
    rdata = dns.dnssec.make_dnskey(private.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256,
                                   flags)
    return private, Key.from_rdata(rdata)


def test_blocks_carry_the_combined_set_signed_by_the_owner() -> None:
    owner_private, owner = key(257)
    zsks = {"k0": frozenset({key(256)[1]}), "k1": frozenset({key(256)[1]})}
    target = Model1Target(zone=ZONE, owner=frozenset({owner}), signing=frozenset({owner}),
                          cds=frozenset({owner}), zsks=zsks)
    windows = []

    def sign(rrset: dns.rrset.RRset, inception: datetime, expiration: datetime
             ) -> dns.rrset.RRset:
        windows.append((inception, expiration))
        sigs = dns.rrset.RRset(ORIGIN, dns.rdataclass.IN, dns.rdatatype.RRSIG, rrset.rdtype)
        sigs.add(dns.dnssec.sign(rrset, owner_private, ORIGIN, owner.rdata,
                                 inception=inception, expiration=expiration), rrset.ttl)
        return sigs

    policy = PolicyConfig(signature_validity=timedelta(days=14),
                          signature_refresh=timedelta(days=7))
    keyset = build_keyset(target, sign, NOW, policy, 300)
    assert keyset.zone == ZONE
    start = int(NOW.timestamp()) - 1
    # the refresh block: validity - refresh - refresh / 4 after the first
    assert [b.valid_from for b in keyset.blocks] == [start, start + int(5.25 * 86400)]
    for block in keyset.blocks:
        assert block.keys == target.dnskeys and block.dnskey.rrset.ttl == 300
        assert block.cds is not None and block.cdnskey is not None
        assert block.cds.rrset.ttl == block.cdnskey.rrset.ttl == 0
        for signed in block.signed_rrsets:
            dns.dnssec.validate(signed.rrset, signed.rrsigs, {ORIGIN: block.dnskey.rrset})
    first = datetime.fromtimestamp(start, UTC)
    assert windows[0] == (first - BACKDATE, first + policy.signature_validity)
    assert lacking_keys(keyset.blocks, frozenset().union(*zsks.values())) == []
    assert lacking_keys(keyset.blocks, {key(256)[1]})  # a ZSK not in the target

    # no CDS target: no CDS/CDNSKEY RRsets (nothing to tell the parent)
    quiet = build_keyset(Model1Target(zone=ZONE, owner=frozenset({owner}),
                                      signing=frozenset({owner}), cds=frozenset(), zsks=zsks),
                         sign, NOW, policy, 300)
    assert all(b.cds is None and b.cdnskey is None for b in quiet.blocks)
