"""SIG(0) transaction signatures (RFC 2931) on the wire: sign, parse, verify. No I/O.

Why not dnspython alone: dnspython (2.9) has no SIG(0) signer, and ``dns.message.from_wire``
rejects a message whose additional section ends in a SIG(0) RR. This module keeps to the
wire: it appends or strips that last RR itself and uses dnspython only for the rest of the
message and for the rdata classes (KEY, SIG, the algorithm implementations).

What is signed (RFC 2931 sec. 3.1): the SIG RDATA without its signature field, followed by
the whole message as it was before the SIG(0) RR was added, i.e. with ARCOUNT one less;
for a response, the request as received comes in between (``request=``).
The SIG(0) RR itself is owner ``.``, type SIG, class ANY, TTL 0, with type covered 0,
labels 0 and original TTL 0, and it must be the last RR of the additional section. We
write the signer's name uncompressed and lowercase, and sign it as written (BIND and Perl
Net::DNS::SEC sign the name as written too); verification tries the name as received,
then lowercased.

Verification errors carry the rcode a receiver answers with and a reason named after the
RFC 8945 error codes: ``BADKEY`` (no usable key with the signer's name, algorithm and key
tag), ``BADSIG`` (the signature does not verify), ``BADTIME`` (now is outside
inception..expiration, widened by ``fudge`` for clock skew), ``UNSIGNED`` (no SIG(0) at
all, answered REFUSED as RFC 3007 sec. 3 says for an unauthorised update). Replay within
the time window is the receiver's business (remember the signatures it has accepted).

Times are plain POSIX seconds, not RFC 4034 serial arithmetic: they stay below 2**32
until 2106.

KEY flags: RFC 2535 sec. 3.1.2 splits the KEY flags into key type (bits 0-1: 00 = use for
authentication and confidentiality, 11 = "no key"), name type (bits 6-7: 00 user, 01
zone, 10 "entity" i.e. host) and the SIG field. BIND's ``dnssec-keygen -T KEY -n HOST``
writes flags 512 (0x0200: name type 10, the key of the host or entity named by the
owner name), which is what a SIG(0) key of a child zone's updater is; ``-n ZONE`` would
write 256 (0x0100, a zone key). We publish 512, and accept any flags on verification
except the "no key" type, with protocol 3 (RFC 3445 sec. 3 made 3, DNSSEC, the only one).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from dns.dnssecalgs import get_algorithm_cls
from dns.dnssecalgs.base import GenericPublicKey
from dns.dnssectypes import Algorithm
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.KEY import KEY
from dns.rdtypes.ANY.SIG import SIG

HOST_KEY_FLAGS = 0x0200
"""KEY flags of a SIG(0) key: name type "entity" (host), usable for authentication (512)."""
_NO_KEY = 0xC000  # key type 11: "no key" (RFC 2535 sec. 3.1.2)
DNSSEC_PROTOCOL = 3
DEFAULT_FUDGE = 300
"""Seconds of clock skew tolerated on either side of the validity window (BIND's
``DNS_TSIG_FUDGE``, which nsupdate also uses for its SIG(0) window)."""

SIG0_ALGORITHMS = (
    Algorithm.ECDSAP256SHA256,
    Algorithm.ECDSAP384SHA384,
    Algorithm.ED25519,
)
"""Algorithms a SIG(0) key made here may have (ECDSAP256SHA256 is the default)."""
VERIFY_ALGORITHMS = (
    *SIG0_ALGORITHMS,
    Algorithm.ED448,
    Algorithm.RSASHA256,
    Algorithm.RSASHA512,
)
"""Algorithms a received SIG(0) may use (RSA so that an older nsupdate key works too);
a KEY of any other algorithm (RSASHA1, DSA, ...) is no key (BADKEY)."""

_HEADER = 12
_SIG_FIXED = struct.Struct("!HBBIIIH")  # type covered .. key tag (RFC 2535 sec. 4.1)
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH


class Sig0Error(Exception):
    """A message that is not acceptable: ``rcode`` to answer with, ``reason`` in short."""

    def __init__(self, rcode: dns.rcode.Rcode, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.rcode = rcode
        self.reason = reason
        self.detail = detail


class Sig0Signer(Protocol):
    """Whatever can sign: a :class:`Sig0Key` or a key held in an HSM/KMS."""

    @property
    def name(self) -> dns.name.Name: ...

    @property
    def algorithm(self) -> Algorithm: ...

    @property
    def key_tag(self) -> int: ...

    def sign_data(self, data: bytes) -> bytes:
        """The DNSSEC-format signature of ``data`` (ECDSA: r||s, RFC 6605)."""
        ...


def key_tag_of(key: KEY | DNSKEY) -> int:
    """RFC 4034 appendix B key tag of a KEY or DNSKEY rdata (same RDATA layout)."""
    wire = key.to_wire() or b""
    total = sum((b << 8) if i % 2 == 0 else b for i, b in enumerate(wire))
    return (total + (total >> 16)) & 0xFFFF


def _algorithm_of_private(private: Any) -> Algorithm:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return Algorithm.ED25519
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if isinstance(private.curve, ec.SECP256R1):
            return Algorithm.ECDSAP256SHA256
        if isinstance(private.curve, ec.SECP384R1):
            return Algorithm.ECDSAP384SHA384
    raise ValueError(
        f"a SIG(0) key must be one of {', '.join(a.name for a in SIG0_ALGORITHMS)}, "
        f"not {type(private).__name__}"
    )


@dataclass(frozen=True)
class Sig0Key:
    """A private SIG(0) key and the name its KEY is published under."""

    name: dns.name.Name
    algorithm: Algorithm
    private: Any = field(repr=False)  # a cryptography private key

    def __post_init__(self) -> None:
        if _algorithm_of_private(self.private) != self.algorithm:
            raise ValueError(
                f"the private key is {_algorithm_of_private(self.private).name}, "
                f"not {Algorithm(self.algorithm).name}"
            )

    @classmethod
    def generate(
        cls, name: dns.name.Name | str, algorithm: Algorithm = Algorithm.ECDSAP256SHA256
    ) -> Sig0Key:
        if algorithm not in SIG0_ALGORITHMS:
            raise ValueError(
                f"SIG(0) algorithm {Algorithm(algorithm).name} is not supported; use one of "
                + ", ".join(a.name for a in SIG0_ALGORITHMS)
            )
        owner = dns.name.from_text(name) if isinstance(name, str) else name
        private = get_algorithm_cls(algorithm).generate().key  # type: ignore[attr-defined]
        return cls(owner, Algorithm(algorithm), private)

    @classmethod
    def from_private(cls, name: dns.name.Name | str, private: Any) -> Sig0Key:
        owner = dns.name.from_text(name) if isinstance(name, str) else name
        return cls(owner, _algorithm_of_private(private), private)

    def key_rdata(self, flags: int = HOST_KEY_FLAGS) -> KEY:
        """The KEY rdata to publish at :attr:`name` (flags 512, protocol 3)."""
        dnskey = get_algorithm_cls(self.algorithm)(self.private).public_key().to_dnskey()
        return KEY(dns.rdataclass.IN, dns.rdatatype.KEY,  # type: ignore[no-untyped-call]
                   flags, DNSSEC_PROTOCOL, self.algorithm, dnskey.key)

    @property
    def key_tag(self) -> int:
        return key_tag_of(self.key_rdata())

    def sign_data(self, data: bytes) -> bytes:
        signer = get_algorithm_cls(self.algorithm)(self.private)
        return signer.sign(data, verify=False, deterministic=False)


@dataclass(frozen=True)
class Signed:
    """A parsed message: ``message`` without the SIG(0) (an ``UpdateMessage`` for UPDATE),
    the SIG(0) rdata when there was one, and the exact ``wire`` received."""

    message: dns.message.Message
    sig: SIG | None
    signer: dns.name.Name | None
    key_tag: int | None
    wire: bytes
    unsigned_wire: bytes  # the message as it was before the SIG(0) was added
    sig_rdata_offset: int | None = None  # where the SIG RDATA starts in ``wire``


# -- signing ------------------------------------------------------------------------------


def _sig_prefix(sig_fields: tuple[int, ...], signer: dns.name.Name) -> bytes:
    return _SIG_FIXED.pack(*sig_fields) + (signer.to_wire() or b"")


def sign(
    wire: bytes,
    key: Sig0Signer,
    *,
    now: int,
    validity: int = 300,
    skew: int = 300,
    request: bytes = b"",
) -> bytes:
    """``wire`` with a SIG(0) RR appended (ARCOUNT + 1), valid from ``now - skew`` to
    ``now + validity``. Backdating the inception (as nsupdate does, by 300 s) lets a
    receiver whose clock is behind ours accept it even without a fudge of its own (Perl
    Net::DNS::SEC has none); it adds no replay risk, as nobody can capture the message
    before it is sent. To sign a response, pass the ``request`` as received (with its own
    SIG(0), if any): RFC 2931 sec. 3.1 has a response's signature cover the request too,
    so it cannot be replayed as the answer to another."""
    if len(wire) < _HEADER:
        raise ValueError("not a DNS message: shorter than its 12-octet header")
    (arcount,) = struct.unpack_from("!H", wire, 10)
    if arcount == 0xFFFF:
        raise ValueError("the additional section is full (ARCOUNT 65535)")
    fields = (0, int(key.algorithm), 0, 0, now + validity, now - skew, key.key_tag)
    prefix = _sig_prefix(fields, key.name.canonicalize())
    rdata = prefix + key.sign_data(prefix + request + wire)
    if len(wire) + 11 + len(rdata) > 0xFFFF:
        raise ValueError("the signed message would exceed 65535 octets")
    rr = b"\x00" + _RR_FIXED.pack(dns.rdatatype.SIG, dns.rdataclass.ANY, 0, len(rdata)) + rdata
    return wire[:10] + struct.pack("!H", arcount + 1) + wire[12:] + rr


# -- parsing ------------------------------------------------------------------------------


def _formerr(detail: str) -> Sig0Error:
    return Sig0Error(dns.rcode.FORMERR, "FORMERR", detail)


def _skip_name(wire: bytes, pos: int) -> int:
    """The offset just after the (possibly compressed) name starting at ``pos``."""
    while True:
        if pos >= len(wire):
            raise _formerr("a name runs past the end of the message")
        length = wire[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > len(wire):
                raise _formerr("a compression pointer runs past the end of the message")
            return pos + 2
        if length & 0xC0:
            raise _formerr(f"unknown label type {length:#04x}")
        pos += 1 + length


def _last_rr_offset(wire: bytes) -> int | None:
    """The offset of the last RR of the additional section, or None when it is empty."""
    if len(wire) < _HEADER:
        raise _formerr(f"{len(wire)} octets: shorter than a DNS header")
    qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
    if ar == 0:
        return None
    pos = _HEADER
    for _ in range(qd):
        pos = _skip_name(wire, pos) + 4
    last = pos
    for _ in range(an + ns + ar):
        last = pos
        pos = _skip_name(wire, pos)
        if pos + _RR_FIXED.size > len(wire):
            raise _formerr("a resource record runs past the end of the message")
        rdlen = _RR_FIXED.unpack_from(wire, pos)[3]
        pos += _RR_FIXED.size + rdlen
    if pos > len(wire):
        raise _formerr("the last resource record runs past the end of the message")
    if pos < len(wire):
        raise _formerr(f"{len(wire) - pos} octets of trailing junk after the message")
    return last


def _split_sig0(wire: bytes) -> tuple[bytes, SIG | None, int | None]:
    """(message before the SIG(0), the SIG rdata, its RDATA offset) or (wire, None, None)."""
    last = _last_rr_offset(wire)
    if last is None:
        return wire, None, None
    pos = _skip_name(wire, last)
    rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(wire, pos)
    if rtype != dns.rdatatype.SIG:
        return wire, None, None
    if wire[last] != 0 or rclass != dns.rdataclass.ANY or ttl != 0:
        raise _formerr("a SIG(0) must have owner '.', class ANY and TTL 0")
    start = pos + _RR_FIXED.size
    sig = dns.rdata.from_wire(dns.rdataclass.ANY, dns.rdatatype.SIG, wire, start, rdlen)
    if not isinstance(sig, SIG) or sig.type_covered != 0 or sig.labels != 0:
        raise _formerr("a SIG(0) must cover type 0 with 0 labels (RFC 2931 sec. 3)")
    (arcount,) = struct.unpack_from("!H", wire, 10)
    unsigned = wire[:10] + struct.pack("!H", arcount - 1) + wire[12:last]
    return unsigned, sig, start


def parse(wire: bytes) -> Signed:
    """The message and its SIG(0), if any. Raises only :class:`Sig0Error` (FORMERR)."""
    try:
        unsigned, sig, offset = _split_sig0(wire)
        message = dns.message.from_wire(unsigned)
    except Sig0Error:
        raise
    except Exception as exc:  # any malformed input is FORMERR, never a crash
        raise _formerr(f"malformed message: {type(exc).__name__}: {exc}") from None
    return Signed(
        message=message,
        sig=sig,
        signer=sig.signer if sig is not None else None,
        key_tag=sig.key_tag if sig is not None else None,
        wire=wire,
        unsigned_wire=unsigned,
        sig_rdata_offset=offset,
    )


# -- verifying ----------------------------------------------------------------------------


def _public_key(key: KEY) -> GenericPublicKey | None:
    try:
        public_cls = get_algorithm_cls(key.algorithm).public_cls
        dnskey = DNSKEY(dns.rdataclass.IN, dns.rdatatype.DNSKEY,  # type: ignore[no-untyped-call]
                        key.flags & 0xFFFF, key.protocol, key.algorithm, key.key)
        return public_cls.from_dnskey(dnskey)
    except Exception:  # a KEY with unusable key data is no key
        return None


def _candidates(sig: SIG, keys: Iterable[KEY]) -> list[GenericPublicKey]:
    found = []
    for key in keys:
        if (key.algorithm != sig.algorithm or key.algorithm not in VERIFY_ALGORITHMS
                or key.protocol != DNSSEC_PROTOCOL
                or key.flags & _NO_KEY == _NO_KEY or key_tag_of(key) != sig.key_tag):
            continue
        public = _public_key(key)
        if public is not None:
            found.append(public)
    return found


def _check_time(sig: SIG, now: int, fudge: int) -> None:
    if now + fudge < sig.inception:
        raise Sig0Error(dns.rcode.NOTAUTH, "BADTIME",
                        f"signed for {sig.inception - now} s in the future (inception "
                        f"{sig.inception}, now {now}, fudge {fudge} s)")
    if now - fudge > sig.expiration:
        raise Sig0Error(dns.rcode.NOTAUTH, "BADTIME",
                        f"the signature expired {now - sig.expiration} s ago (expiration "
                        f"{sig.expiration}, now {now}, fudge {fudge} s)")


def verify(
    signed: Signed,
    keys: Iterable[KEY] | dns.rrset.RRset,
    *,
    now: int,
    name: dns.name.Name | None = None,
    fudge: int = DEFAULT_FUDGE,
    request: bytes = b"",
) -> None:
    """Raise :class:`Sig0Error` unless ``signed`` carries a SIG(0) made by one of ``keys``.

    ``name`` is where ``keys`` are published (default: the RRset's owner when ``keys`` is
    an RRset); the signer must be that name. The signature is checked before the time, so
    BADTIME is only said of an authentic message. For a signed response, ``request`` is
    the request exactly as sent (see :func:`sign`).
    """
    sig = signed.sig
    if sig is None or signed.signer is None:
        raise Sig0Error(dns.rcode.REFUSED, "UNSIGNED", "the message carries no SIG(0)")
    owner = name if name is not None else getattr(keys, "name", None)
    if owner is not None and owner != signed.signer:
        raise Sig0Error(dns.rcode.NOTAUTH, "BADKEY",
                        f"signed by {signed.signer}, but the keys given are those of {owner}")
    candidates = _candidates(sig, keys)
    if not candidates:
        raise Sig0Error(dns.rcode.NOTAUTH, "BADKEY",
                        f"no usable KEY {signed.signer} with algorithm "
                        f"{Algorithm.to_text(sig.algorithm)} and key tag {sig.key_tag}")
    fields = (sig.type_covered, sig.algorithm, sig.labels, sig.original_ttl,
              sig.expiration, sig.inception, sig.key_tag)
    # As received first; then lowercased, the canonical form some signers use.
    prefixes = {_sig_prefix(fields, sig.signer), _sig_prefix(fields, sig.signer.canonicalize())}
    if not any(_verifies(public, sig.signature, prefix + request + signed.unsigned_wire)
               for public in candidates for prefix in prefixes):
        raise Sig0Error(dns.rcode.NOTAUTH, "BADSIG",
                        f"the SIG(0) of {signed.signer} (key tag {sig.key_tag}) does not verify")
    _check_time(sig, now, fudge)


def _verifies(public: GenericPublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data)
    except (InvalidSignature, ValueError, dns.exception.DNSException):
        return False
    return True
