"""Build real, dnspython-signed zone data for simulated Model 2 providers.

Every simulated provider has its own KSK and ZSK (ECDSAP256SHA256 unless told otherwise).
The helpers produce the plain observation objects of ``core.observation``
(``ServerView``, ``ParentView``, ``CachedRRset``, ``ApiZoneState``) so the pure decision
code can be tested against signatures that dnspython really validates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from dns.rdtypes.ANY.DNSKEY import DNSKEY

from core.keys import Digest, Key
from core.observation import (
    ApiKey,
    ApiZoneState,
    CachedRRset,
    ParentView,
    ServerView,
    SignedRRset,
)

ZONE_TEXT = "example.test."
ZONE = dns.name.from_text(ZONE_TEXT)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL = 3600
ECDSA = dns.dnssec.Algorithm.ECDSAP256SHA256
ED25519 = dns.dnssec.Algorithm.ED25519

# Signature validity window around NOW: valid, and one that ended a day ago.
VALID = (NOW - timedelta(days=1), NOW + timedelta(days=14))
EXPIRED = (NOW - timedelta(days=30), NOW - timedelta(days=1))


@dataclass(frozen=True)
class SigningKey:
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    dnskey: DNSKEY

    @property
    def key(self) -> Key:
        return Key.from_rdata(self.dnskey)

    @property
    def tag(self) -> int:
        return int(dns.dnssec.key_id(self.dnskey))

    def ds(self, digest_type: int = 2) -> Digest:
        return self.key.ds(ZONE, digest_type)


def make_key(*, ksk: bool, algorithm: int = ECDSA) -> SigningKey:
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == ECDSA:
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
    else:  # pragma: no cover - only the two algorithms above are used
        raise ValueError(algorithm)
    flags = 257 if ksk else 256
    return SigningKey(private, dns.dnssec.make_dnskey(private.public_key(), algorithm, flags))


@dataclass(frozen=True)
class SimProvider:
    """A simulated signer: its name, one nameserver address, its own KSK and ZSK."""

    name: str
    server: str
    ksk: SigningKey
    zsk: SigningKey

    @property
    def label(self) -> str:
        return f"{self.name} ({self.server})"

    @property
    def own(self) -> tuple[SigningKey, SigningKey]:
        return (self.ksk, self.zsk)


def make_provider(index: int, *, algorithm: int = ECDSA) -> SimProvider:
    return SimProvider(
        name=f"p{index}",
        server=f"192.0.2.{index + 1}:53",
        ksk=make_key(ksk=True, algorithm=algorithm),
        zsk=make_key(ksk=False, algorithm=algorithm),
    )


# --- RRsets -------------------------------------------------------------------------------


def rrset_of(rdtype: str, texts: Iterable[str], ttl: int = TTL) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(ZONE, ttl, dns.rdataclass.IN, rdtype, list(texts))


def dnskey_rrset(keys: Iterable[SigningKey | DNSKEY], ttl: int = TTL) -> dns.rrset.RRset:
    rdatas = [k.dnskey if isinstance(k, SigningKey) else k for k in keys]
    return dns.rrset.from_rdata_list(ZONE, ttl, rdatas)


def soa_rrset(serial: int = 1, ttl: int = TTL) -> dns.rrset.RRset:
    return rrset_of(
        "SOA", [f"ns1.{ZONE_TEXT} hostmaster.{ZONE_TEXT} {serial} 7200 3600 1209600 300"], ttl
    )


def ds_texts(keys: Iterable[SigningKey], digest_type: int = 2) -> list[str]:
    return [k.ds(digest_type).text for k in keys]


def cds_rrset(keys: Iterable[SigningKey], digest_type: int = 2) -> dns.rrset.RRset:
    return rrset_of("CDS", ds_texts(keys, digest_type))


def cdnskey_rrset(keys: Iterable[SigningKey]) -> dns.rrset.RRset:
    return rrset_of("CDNSKEY", [k.key.text for k in keys])


def ds_rrset(texts: Iterable[str], ttl: int = 86400) -> dns.rrset.RRset:
    return rrset_of("DS", texts, ttl)


def sign(
    rrset: dns.rrset.RRset,
    signers: Iterable[SigningKey],
    window: tuple[datetime, datetime] = VALID,
) -> dns.rrset.RRset:
    sigs = [
        dns.dnssec.sign(rrset, s.private, ZONE, s.dnskey, inception=window[0],
                        expiration=window[1])
        for s in signers
    ]
    return dns.rrset.from_rdata_list(ZONE, rrset.ttl, sigs)


def signed(
    rrset: dns.rrset.RRset,
    signers: Iterable[SigningKey],
    window: tuple[datetime, datetime] = VALID,
) -> SignedRRset:
    signers = list(signers)
    return SignedRRset(rrset, sign(rrset, signers, window) if signers else None)


# --- Views --------------------------------------------------------------------------------


def all_keys(providers: Sequence[SimProvider]) -> list[SigningKey]:
    return [k for p in providers for k in p.own]


def model2_keys(
    me: SimProvider, providers: Sequence[SimProvider], *, import_ksks: bool = True
) -> list[SigningKey]:
    """What ``me`` serves in a synced Model 2 zone."""
    out = list(me.own)
    for other in providers:
        if other is not me:
            out.extend(other.own if import_ksks else (other.zsk,))
    return out


def server_view(
    provider: SimProvider,
    *,
    dnskeys: Iterable[SigningKey | DNSKEY],
    cds_keys: Iterable[SigningKey] | None = None,
    cds_digest_type: int = 2,
    dnskey_signers: Iterable[SigningKey] | None = None,
    soa_signers: Iterable[SigningKey] | None = None,
    soa_window: tuple[datetime, datetime] = VALID,
    nsec3: bool = False,
    server: str | None = None,
    dnskey_ttl: int = TTL,
) -> ServerView:
    """One nameserver's answers: the DNSKEY RRset signed by the provider's KSK (or
    ``dnskey_signers``), the SOA by its ZSK (or ``soa_signers``), CDS/CDNSKEY if asked."""
    keyset = dnskey_rrset(dnskeys, dnskey_ttl)
    ksks = [provider.ksk] if dnskey_signers is None else list(dnskey_signers)
    zsks = [provider.zsk] if soa_signers is None else list(soa_signers)
    cds = cdnskey = None
    if cds_keys is not None:
        cds_keys = list(cds_keys)
        cds = signed(cds_rrset(cds_keys, cds_digest_type), zsks)
        cdnskey = signed(cdnskey_rrset(cds_keys), zsks)
    return ServerView(
        provider=provider.name,
        server=server or provider.server,
        at=NOW,
        dnskey=signed(keyset, ksks),
        cds=cds,
        cdnskey=cdnskey,
        soa=signed(soa_rrset(), zsks, soa_window),
        nsec3=nsec3,
    )


def synced_servers(
    providers: Sequence[SimProvider], *, import_ksks: bool = True
) -> list[ServerView]:
    """Every provider in the Model 2 steady state: all keys (or all ZSKs) imported, CDS of
    every KSK published everywhere."""
    ksks = [p.ksk for p in providers]
    return [
        server_view(p, dnskeys=model2_keys(p, providers, import_ksks=import_ksks),
                    cds_keys=ksks)
        for p in providers
    ]


def parent_view(texts: Iterable[str], server: str = "192.0.2.100:53") -> ParentView:
    texts = list(texts)
    return ParentView(server=server, at=NOW, ds=SignedRRset(ds_rrset(texts), None) if texts
                      else None)


def cached(
    rrset: dns.rrset.RRset, *, source: str, server: str, age: timedelta = timedelta(minutes=10)
) -> CachedRRset:
    last_seen = NOW - age
    return CachedRRset(source=source, server=server, rrset=rrset, last_seen=last_seen,
                       expires=last_seen + timedelta(seconds=rrset.ttl))


# --- API states ---------------------------------------------------------------------------


def api_keys(provider: SimProvider) -> tuple[ApiKey, ...]:
    return (
        ApiKey(provider.ksk.key, "ksk", active=True, published=True, key_id=f"{provider.name}-k"),
        ApiKey(provider.zsk.key, "zsk", active=True, published=True, key_id=f"{provider.name}-z"),
    )


def api_state(
    provider: SimProvider,
    *,
    foreign: Iterable[SigningKey | Key] = (),
    cds: Iterable[Digest] = (),
    cdnskey: Iterable[Key] = (),
    extra: Iterable[ApiKey] = (),
    own: tuple[ApiKey, ...] | None = None,
    max_ttl: int | None = None,
) -> ApiZoneState:
    return ApiZoneState(
        provider=provider.name,
        own_keys=(api_keys(provider) if own is None else own) + tuple(extra),
        foreign_dnskeys=frozenset(k.key if isinstance(k, SigningKey) else k for k in foreign),
        cds=frozenset(cds),
        cdnskey=frozenset(cdnskey),
        max_ttl=max_ttl,
    )
