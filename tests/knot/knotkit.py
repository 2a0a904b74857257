"""Helpers of the Knot (Model 1) tests: the zone owner's file-based KSK, SKRs built from
KSRs the way a controller would, and direct DNS checks of what a Knot server serves."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from prereq import needs

from core.keys import Key
from core.keyset import SignedKeySet
from multisigner_lab import dnsq
from multisigner_lab.knot import KnotInstance
from providers.knot.adapter import KnotProvider, KnotProviderConfig
from providers.knot.keyset import from_skr_blocks
from providers.knot.skr import KsrBlock, SkrBlock, format_skr

NEEDS_KNOT = needs("knotd", "knotc", "keymgr", what="Knot DNS 3.2, Debian package knot")

ZONE_TEXT = "example.test."
ZONE = dns.name.from_text(ZONE_TEXT)
TTL = 2
INCEPTION_BACKDATE = 5400  # keymgr sign-ksr puts RRSIG inception 1.5 h before each block
VALIDITY = 14 * 86400


@dataclass(frozen=True)
class OwnerKsk:
    """The zone owner's KSK: ECDSA P-256, private key in a PEM file (mode 0600)."""

    path: Path
    private: ec.EllipticCurvePrivateKey
    dnskey: DNSKEY

    @classmethod
    def create(cls, directory: Path, name: str = "owner-ksk") -> OwnerKsk:
        private = ec.generate_private_key(ec.SECP256R1())
        path = directory / f"{name}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> OwnerKsk:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        dnskey = dns.dnssec.make_dnskey(
            private.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, 257
        )
        return cls(path, private, dnskey)

    @property
    def key(self) -> Key:
        return Key.from_rdata(self.dnskey)

    @property
    def tag(self) -> int:
        return int(dns.dnssec.key_id(self.dnskey))


def _sign(
    rrset: dns.rrset.RRset, ksks: Sequence[OwnerKsk], inception: int, expiration: int
) -> dns.rrset.RRset:
    sigs = dns.rrset.RRset(ZONE, dns.rdataclass.IN, dns.rdatatype.RRSIG, rrset.rdtype)
    sigs.update_ttl(rrset.ttl)
    for ksk in ksks:
        sigs.add(
            dns.dnssec.sign(
                rrset, ksk.private, ZONE, ksk.dnskey, inception=inception, expiration=expiration
            )
        )
    return sigs


def skr_block(
    timestamp: int,
    ksks: Sequence[OwnerKsk],
    zsks: Iterable[Key],
    *,
    cds_ksks: Sequence[OwnerKsk] | None = None,
    ttl: int = TTL,
    validity: int = VALIDITY,
) -> SkrBlock:
    """One SKR block: DNSKEY = ``ksks`` + ``zsks``, CDNSKEY/CDS (TTL 0, as Knot's sign-ksr
    writes them) naming ``cds_ksks`` (default: ``ksks``), all signed by every KSK."""
    inception, expiration = timestamp - INCEPTION_BACKDATE, timestamp + validity
    dnskey = dns.rrset.RRset(ZONE, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    dnskey.update_ttl(ttl)
    for ksk in ksks:
        dnskey.add(ksk.dnskey)
    for zsk in zsks:
        dnskey.add(zsk.rdata)
    publish = list(ksks if cds_ksks is None else cds_ksks)
    cdnskey = dns.rrset.RRset(ZONE, dns.rdataclass.IN, dns.rdatatype.CDNSKEY)
    cds = dns.rrset.RRset(ZONE, dns.rdataclass.IN, dns.rdatatype.CDS)
    for ksk in publish:
        cdnskey.add(
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDNSKEY, ksk.dnskey.to_text()), 0
        )
        cds.add(dns.dnssec.make_cds(ZONE, ksk.dnskey, "SHA256"), 0)
    return SkrBlock(
        timestamp,
        dnskey,
        _sign(dnskey, ksks, inception, expiration),
        cdnskey,
        _sign(cdnskey, ksks, inception, expiration),
        cds,
        _sign(cds, ksks, inception, expiration),
    )


def keys_at(ksr: Sequence[KsrBlock], timestamp: int) -> tuple[Key, ...]:
    """The ZSKs one provider's KSR asks to publish at ``timestamp`` (its first block's
    keys before that block)."""
    current = ksr[0].keys
    for block in ksr:
        if block.timestamp <= timestamp:
            current = block.keys
    return current


def combined_skr(
    ksrs: Sequence[Sequence[KsrBlock]], ksks: Sequence[OwnerKsk], **kwargs: object
) -> list[SkrBlock]:
    """One block per KSR timestamp (of every provider), each holding the owner KSK(s)
    and every provider's ZSKs in effect at that time: the combined DNSKEY RRset."""
    stamps = sorted({b.timestamp for ksr in ksrs for b in ksr})
    return [
        skr_block(ts, ksks, {k for ksr in ksrs for k in keys_at(ksr, ts)}, **kwargs)  # type: ignore[arg-type]
        for ts in stamps
    ]


def now_block(ksks: Sequence[OwnerKsk], zsks: Iterable[Key], **kwargs: object) -> list[SkrBlock]:
    """A one-block SKR stamped a second ago (each step re-imports the whole current
    picture; an import replaces the offline records from that time on)."""
    return [skr_block(int(time.time()) - 1, ksks, zsks, **kwargs)]  # type: ignore[arg-type]


def skr_text(blocks: Sequence[SkrBlock]) -> str:
    return format_skr(ZONE, blocks, generated_at=int(time.time()))


def keyset(blocks: Sequence[SkrBlock]) -> SignedKeySet:
    """The blocks as the provider-neutral signed key set the controller delivers."""
    return from_skr_blocks(ZONE_TEXT, blocks)


def provider(knot: KnotInstance, **overrides: object) -> KnotProvider:
    fields: dict[str, object] = {
        "name": knot.name,
        "knot_config": knot.conf_path,
        "nameservers": [knot.nameserver],
        "timeout": 10,
    }
    fields.update(overrides)
    return KnotProvider(KnotProviderConfig.model_validate(fields))


# ------------------------------------------------------------------------ what is served


@dataclass(frozen=True)
class Served:
    rrset: dns.rrset.RRset
    sigs: dns.rrset.RRset

    @property
    def keys(self) -> frozenset[Key]:
        return frozenset(Key.from_rdata(rd) for rd in self.rrset)  # type: ignore[arg-type]

    @property
    def signer_tags(self) -> frozenset[int]:
        return frozenset(int(s.key_tag) for s in self.sigs)


def served(knot: KnotInstance, rdtype: str, qname: str = ZONE_TEXT) -> Served:
    """The answer RRset and its RRSIGs, straight from the server (RD off, DO on)."""
    resp = dnsq.query(knot.address, knot.port, qname, rdtype)
    rrset = dnsq.answer(resp, qname, rdtype)
    sigs = dnsq.answer(resp, qname, rdtype, covers=rdtype)
    assert rrset is not None, f"{knot.name} serves no {qname} {rdtype}: {resp}"
    assert sigs is not None, f"{knot.name} serves {qname} {rdtype} unsigned: {resp}"
    return Served(rrset, sigs)


def validates(data: Served, dnskey: dns.rrset.RRset) -> bool:
    try:
        dns.dnssec.validate(data.rrset, data.sigs, {ZONE: dnskey})
    except dns.dnssec.ValidationFailure:
        return False
    return True
