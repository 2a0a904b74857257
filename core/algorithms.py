"""DNSSEC signing algorithms: parsed once, from the config's text, wherever one is named.

The policy names the zone's algorithm (any algorithm a provider may sign with); an owner-KSK
store holds only the algorithms it can sign with itself (``OWNER_KSK_ALGORITHMS``), and a
PKCS#11 or KMS store only the ECDSA ones (``ECDSA_PARAMS``).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from dns.dnssectypes import Algorithm

ZONE_SIGNING_ALGORITHMS = (
    Algorithm.RSASHA256,
    Algorithm.RSASHA512,
    Algorithm.ECDSAP256SHA256,
    Algorithm.ECDSAP384SHA384,
    Algorithm.ED25519,
    Algorithm.ED448,
)
"""What a zone's policy may name (RFC 8624 MUST/RECOMMENDED signing algorithms)."""

SIGNING_ALGORITHMS = (
    Algorithm.ECDSAP256SHA256,
    Algorithm.ECDSAP384SHA384,
    Algorithm.ED25519,
    Algorithm.ED448,
)
"""What the file store can hold; PKCS#11 and KMS stores hold the ECDSA ones."""

# ECDSA algorithms: curve, hash name, octets of r and of s (RFC 6605 sec. 4).
ECDSA_PARAMS: dict[Algorithm, tuple[type[ec.EllipticCurve], str, int]] = {
    Algorithm.ECDSAP256SHA256: (ec.SECP256R1, "sha256", 32),
    Algorithm.ECDSAP384SHA384: (ec.SECP384R1, "sha384", 48),
}


def parse_algorithm(value: str | int) -> Algorithm:
    """``"ECDSAP256SHA256"``, ``"ecdsap256sha256"``, ``"13"`` or ``13`` → Algorithm."""
    try:
        return Algorithm(Algorithm.from_text(str(value).strip().upper()))
    except ValueError:
        raise ValueError(f"{value!r} is not a DNSSEC algorithm") from None
