"""How many DNSKEY RRset signatures a store makes per second (for the lead's benchmark).

The RRset is a typical Model 1 one: the owner KSK plus two providers' ZSKs. The signer
is fetched once and reused, as when many SKR blocks are signed; every signature is
verified (``sign_rrset_with``'s default), as in production.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import ec
from dns.dnssecalgs.ecdsa import PublicECDSAP256SHA256

from providers.kskstore.base import KskStore, sign_rrset_with

ZONE = dns.name.from_text("example.test.")


def typical_dnskey_rrset(ksk_text: str, zone: dns.name.Name = ZONE) -> dns.rrset.RRset:
    """The owner KSK and two made-up provider ZSKs, TTL 3600."""
    zsks = [
        PublicECDSAP256SHA256(key=ec.generate_private_key(ec.SECP256R1()).public_key())
        .to_dnskey(flags=256)
        .to_text()
        for _ in range(2)
    ]
    return dns.rrset.from_text(zone, 3600, dns.rdataclass.IN, dns.rdatatype.DNSKEY, ksk_text, *zsks)


def signatures_per_second(store: KskStore, key_id: str, seconds: float = 2.0) -> float:
    """Sign a 3-key DNSKEY RRset with ``key_id`` for about ``seconds``; signatures/s."""
    signer = store.signer(key_id)
    rrset = typical_dnskey_rrset(signer.stored.dnskey.text)
    inception = datetime.now(UTC) - timedelta(hours=1)
    expiration = inception + timedelta(days=14)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        sign_rrset_with(rrset, signer, ZONE, inception, expiration)
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)
