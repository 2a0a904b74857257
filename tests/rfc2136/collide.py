"""ECDSA P-256 keys whose DNSKEY key tag is chosen (found by trying fresh keys: about 65536
tries for one given tag, a few seconds), in the ISC private-key format PowerDNS' cryptokeys
API imports (``"privatekey"`` in a POST)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.keys import Key

MAX_TRIES = 2_000_000  # P(no hit) for one 16-bit tag: e^-30


def key_tag(flags: int, public: bytes) -> int:
    """RFC 4034 Appendix B over the DNSKEY RDATA (protocol 3, algorithm 13)."""
    wire = flags.to_bytes(2, "big") + bytes([3, 13]) + public
    acc = sum(b << 8 if i % 2 == 0 else b for i, b in enumerate(wire))
    return (acc + (acc >> 16)) & 0xFFFF


@dataclass(frozen=True)
class ImportKey:
    flags: int
    private: ec.EllipticCurvePrivateKey

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.X962,
                                                      PublicFormat.UncompressedPoint)[1:]

    @property
    def key(self) -> Key:
        return Key(f"{self.flags} 3 13 {base64.b64encode(self.public).decode()}")

    def isc(self) -> str:
        scalar = self.private.private_numbers().private_value.to_bytes(32, "big")
        return ("Private-key-format: v1.2\nAlgorithm: 13 (ECDSAP256SHA256)\n"
                f"PrivateKey: {base64.b64encode(scalar).decode()}\n")


def with_tag(flags: int, tag: int) -> ImportKey:
    """A fresh key whose DNSKEY with ``flags`` has key tag ``tag``."""
    for _ in range(MAX_TRIES):
        candidate = ImportKey(flags, ec.generate_private_key(ec.SECP256R1()))
        if key_tag(flags, candidate.public) == tag:
            assert candidate.key.key_tag == tag  # the fast tag agrees with dnspython's
            return candidate
    raise AssertionError(f"no key with tag {tag} in {MAX_TRIES} tries")  # pragma: no cover
