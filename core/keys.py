"""DNSKEY/DS values in the one canonical text form every layer compares.

Providers, nameservers and the state DB all describe keys differently (spaced base64,
upper/lower-case digests, JSON objects); comparing them only after turning each into
``Key``/``Digest`` keeps "is this the same key?" a set operation everywhere else.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
from dns.dnssectypes import DSDigest
from dns.exception import DeniedByPolicy, UnsupportedAlgorithm, ValidationFailure
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.RRSIG import RRSIG
from dns.rdtypes.dsbase import DSBase

Role = Literal["ksk", "zsk", "csk"]
SEP = 0x0001
ZONE_KEY = 0x0100
SHA256 = 2


# Keys are compared and tagged constantly (every observation builds new Key values); parsing
# is cached by text, which is the identity anyway.
@lru_cache(maxsize=16384)
def _dnskey(text: str) -> DNSKEY:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, text)
    assert isinstance(rdata, DNSKEY)
    return rdata


@lru_cache(maxsize=16384)
def _key_tag(text: str) -> int:
    return int(dns.dnssec.key_id(_dnskey(text)))


@lru_cache(maxsize=16384)
def _make_ds(zone: dns.name.Name, text: str, digest_type: int, validating: bool) -> DSBase:
    return dns.dnssec.make_ds(zone, _dnskey(text), DSDigest(digest_type),
                              validating=validating)


def _norm_zone(zone: str | dns.name.Name) -> dns.name.Name:
    return zone if isinstance(zone, dns.name.Name) else dns.name.from_text(zone)


@dataclass(frozen=True, order=True)
class Key:
    """One DNSKEY, identified by its canonical one-token text ``"257 3 13 <base64>"``."""

    text: str

    @classmethod
    def from_rdata(cls, rdata: DNSKEY) -> Key:
        b64 = base64.b64encode(rdata.key).decode()
        return cls(f"{rdata.flags} {rdata.protocol} {int(rdata.algorithm)} {b64}")

    @classmethod
    def parse(cls, text: str) -> Key:
        """Accept any DNSKEY presentation form (spaces in the key, mnemonic algorithms)."""
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, text)
        assert isinstance(rdata, DNSKEY)
        return cls.from_rdata(rdata)

    @property
    def rdata(self) -> DNSKEY:
        return _dnskey(self.text)

    @property
    def flags(self) -> int:
        return int(self.text.split(" ", 1)[0])

    @property
    def algorithm(self) -> int:
        return int(self.text.split(" ", 3)[2])

    @property
    def algorithm_name(self) -> str:
        return dns.dnssec.algorithm_to_text(self.algorithm)

    @property
    def sep(self) -> bool:
        return bool(self.flags & SEP)

    @property
    def key_tag(self) -> int:
        return _key_tag(self.text)

    def ds(
        self, zone: str | dns.name.Name, digest_type: int = SHA256, *, validating: bool = False
    ) -> Digest:
        """The DS for this key. ``validating`` allows digest types (SHA-1) that may still be
        *matched* at a parent though they must not be *created* (RFC 8624)."""
        ds = _make_ds(_norm_zone(zone), self.text, digest_type, validating)
        return Digest.from_rdata(ds)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical DNSKEY text: the key's identity where a short
        fixed-width one is needed (the state database's unique constraints)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def fingerprint(self) -> str:
        """8 hex digits of the SHA-256 of the DNSKEY text: tells apart keys whose 16-bit key
        tags collide (two signers can well hold such keys; the tag is never an identity)."""
        return self.digest[:8]

    def short(self) -> str:
        return f"{self.key_tag}/{self.algorithm_name}/{'KSK' if self.sep else 'ZSK'}"


@dataclass(frozen=True, order=True)
class Digest:
    """One DS/CDS record in canonical text ``"12345 13 2 <UPPER HEX>"``."""

    text: str

    @classmethod
    def from_rdata(cls, rdata: DSBase) -> Digest:
        return cls(
            f"{rdata.key_tag} {int(rdata.algorithm)} {rdata.digest_type} "
            f"{rdata.digest.hex().upper()}"
        )

    @classmethod
    def parse(cls, text: str) -> Digest:
        # Parsed as CDS, whose syntax is DS's plus the RFC 8078 delete form "0 0 0 00".
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDS, text)
        assert isinstance(rdata, DSBase)
        return cls.from_rdata(rdata)

    @property
    def key_tag(self) -> int:
        return int(self.text.split(" ", 1)[0])

    @property
    def algorithm(self) -> int:
        return int(self.text.split(" ", 2)[1])

    @property
    def digest_type(self) -> int:
        return int(self.text.split(" ", 3)[2])

    @property
    def is_delete(self) -> bool:
        """RFC 8078 sec. 4: ``0 0 0 00`` asks the parent to remove the DS RRset."""
        return self.algorithm == 0 and self.key_tag == 0

    def matches(self, key: Key, zone: str | dns.name.Name) -> bool:
        if self.key_tag != key.key_tag or self.algorithm != key.algorithm:
            return False
        try:
            return key.ds(zone, self.digest_type, validating=True) == self
        except (UnsupportedAlgorithm, DeniedByPolicy, ValueError):
            return False


def role_of(key: Key, signs_zone_data: bool | None = None) -> Role:
    """KSK/ZSK by the SEP flag; a SEP key that also signs zone data is a CSK."""
    if not key.sep:
        return "zsk"
    return "csk" if signs_zone_data else "ksk"


def parent_follows(ds_set: frozenset[Digest], ksks: frozenset[Key], zone: str) -> bool:
    """The parent's DS set names exactly these KSKs. Compared by key, not by record,
    because a registry may publish its own choice of digest types."""
    if not ds_set:
        return not ksks
    covered = {k for k in ksks if any(d.matches(k, zone) for d in ds_set)}
    extra = [d for d in ds_set if not any(d.matches(k, zone) for k in ksks)]
    return covered == set(ksks) and not extra


def tag_label(key: Key, among: Iterable[Key]) -> str:
    """The key's tag for messages, with its fingerprint (``12345~ab12cd34``) when another
    of ``among`` shares the tag, so colliding keys stay distinct."""
    collides = any(k.key_tag == key.key_tag and k != key for k in among)
    return f"{key.key_tag}~{key.fingerprint}" if collides else str(key.key_tag)


def short_among(key: Key, among: Iterable[Key]) -> str:
    """``Key.short()``, with the fingerprint appended when another of ``among`` shares the
    tag (``12345/ECDSAP256SHA256/KSK~ab12cd34``)."""
    collides = any(k.key_tag == key.key_tag and k != key for k in among)
    return f"{key.short()}~{key.fingerprint}" if collides else key.short()


def ds_label(digest: Digest, among: Iterable[Digest]) -> str:
    """``DS <tag>``, with the digest's first 8 hex digits when another of ``among`` (of
    another key) shares the tag."""
    collides = any(d.key_tag == digest.key_tag and d != digest for d in among)
    return f"DS {digest.key_tag}~{digest.text.rsplit(' ', 1)[1][:8]}" if collides \
        else f"DS {digest.key_tag}"


def tag_labels(keys: Iterable[Key]) -> list[str]:
    """``tag_label`` of each key, sorted by tag."""
    unique = sorted(set(keys), key=lambda k: (k.key_tag, k.text))
    return [tag_label(k, unique) for k in unique]


@lru_cache(maxsize=16384)
def _verifies(key_text: str, rrset_text: str, sig: RRSIG) -> bool:
    rrset = dns.rrset.from_text_list(*_rrset_parts(rrset_text))
    one = dns.rdataset.from_rdata(3600, _dnskey(key_text))
    try:
        # ``now`` = the inception: this asks *who* signed, not whether it is still valid.
        dns.dnssec.validate_rrsig(rrset, sig, {sig.signer: one}, now=float(sig.inception))
    except (ValidationFailure, UnsupportedAlgorithm, DeniedByPolicy, ValueError):
        return False
    return True


def _rrset_parts(text: str) -> tuple[str, int, str, str, list[str]]:
    name, ttl, rdclass, rdtype, *records = text.split("\n")
    return name, int(ttl), rdclass, rdtype, records


def signers(keys: Iterable[Key], rrset: dns.rrset.RRset,
            rrsigs: Iterable[RRSIG] | None) -> frozenset[Key]:
    """Those of ``keys`` that an RRSIG over ``rrset`` verifies with. By signature, not by
    key tag: a key that merely shares the real signer's tag (and algorithm) is not one."""
    if rrsigs is None:
        return frozenset()
    sigs = list(rrsigs)
    text = "\n".join([rrset.name.to_text(), str(rrset.ttl),
                      dns.rdataclass.to_text(rrset.rdclass),
                      dns.rdatatype.to_text(rrset.rdtype), *sorted(rd.to_text() for rd in rrset)])
    return frozenset(
        key for key in keys
        if any(int(sig.key_tag) == key.key_tag and int(sig.algorithm) == key.algorithm
               and _verifies(key.text, text, sig) for sig in sigs))
