"""What every owner-KSK store offers, and signing an RRset with a key held in one.

Model 1 (docs/design-notes.md, "Steps per model"): the zone owner holds the only KSK and
signs the combined DNSKEY RRset and the CDS/CDNSKEY RRsets. The private key lives in a
store — PEM files, a PKCS#11 token or AWS KMS — and never leaves it: a store hands out a *signer*, a
``dns.dnssecalgs.base.GenericPrivateKey`` whose ``sign()`` asks the store for a
signature, so ``dns.dnssec.sign()`` builds the RFC 4034 signing input as usual.

    KeyStoreError(MultisignerError)  anything a store cannot do; names the store, the key
                                     (file, token label, KMS key) and what to do next
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from dns.dnssecalgs import get_algorithm_cls
from dns.dnssecalgs.base import GenericPrivateKey, GenericPublicKey
from dns.dnssectypes import Algorithm
from dns.rdtypes.ANY.DNSKEY import DNSKEY

from core.algorithms import ECDSA_PARAMS
from core.errors import MultisignerError
from core.keys import SEP, ZONE_KEY, Key

if TYPE_CHECKING:
    from core.owner_ksk import OwnerKskConfig

KSK_FLAGS = ZONE_KEY | SEP  # 257



class KeyStoreError(MultisignerError):
    """An owner-KSK store cannot do what was asked.

    The message starts with the store (``file /var/lib/multisigner/keys``, ``pkcs11 token
    'ksk' (/usr/lib/softhsm/libsofthsm2.so)``, ``kms eu-west-1``) and, when known, the key.
    """

    def __init__(self, message: str, *, store: str, key_id: str | None = None) -> None:
        where = f"owner KSK store {store}"
        if key_id:
            where += f", key {key_id}"
        super().__init__(f"{where}: {message}")
        self.store = store
        self.key_id = key_id


@dataclass(frozen=True)
class StoredKey:
    """One KSK in a store: the store's own id for it and its DNSKEY (flags 257)."""

    key_id: str
    dnskey: Key
    created: datetime | None = None

    @property
    def key_tag(self) -> int:
        return self.dnskey.key_tag


def algorithm_of(public_key: Any) -> Algorithm | None:
    """The DNSSEC algorithm a cryptography public or private key can serve, if any."""
    if isinstance(public_key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        for algorithm, (curve, _, _) in ECDSA_PARAMS.items():
            if isinstance(public_key.curve, curve):
                return algorithm
        return None
    if isinstance(public_key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return Algorithm.ED25519
    if isinstance(public_key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return Algorithm.ED448
    return None


def describe_key_type(key: Any) -> str:
    """A short human description of a cryptography key, for error messages."""
    algorithm = algorithm_of(key)
    if algorithm is not None:
        return algorithm.name
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size}-bit"
    return type(key).__name__.lstrip("_")


def dnskey_of(public_key: Any, algorithm: Algorithm) -> Key:
    """The KSK DNSKEY (flags 257) of a cryptography public key for ``algorithm``."""
    private_cls = get_algorithm_cls(algorithm)
    rdata = private_cls.public_cls(key=public_key).to_dnskey(flags=KSK_FLAGS)
    return Key.from_rdata(rdata)


RawSign = Callable[[bytes, bool], bytes]
"""``(signing input, deterministic) -> signature in DNSSEC wire form`` (r||s for ECDSA)."""


class StoreSigner(GenericPrivateKey):
    """A private key that stays in its store; dnspython calls ``sign()`` on it.

    ``sign()`` returns what RFC 6605/8080 put into an RRSIG (r||s for ECDSA). HSM and KMS
    signatures are randomized, so ``deterministic`` is honoured only by the file store.
    """

    def __init__(self, key: Any, *, raw_sign: RawSign | None = None, store: str = "") -> None:
        if not isinstance(key, StoredKey) or raw_sign is None:
            raise TypeError("StoreSigner(key: StoredKey, raw_sign=...) is built by a KskStore")
        self.stored = key
        self.store = store
        self._raw_sign = raw_sign
        algorithm = Algorithm(key.dnskey.algorithm)
        self.public_cls = get_algorithm_cls(algorithm).public_cls
        self._public = self.public_cls.from_dnskey(key.dnskey.rdata)

    @property
    def dnskey(self) -> DNSKEY:
        return self.stored.dnskey.rdata

    def sign(self, data: bytes, verify: bool = False, deterministic: bool = True) -> bytes:
        signature = self._raw_sign(data, deterministic)
        if verify:
            try:
                self._public.verify(signature, data)
            except InvalidSignature:
                raise KeyStoreError(
                    "the store returned a signature that does not verify with the key's "
                    f"DNSKEY (tag {self.stored.key_tag}); the store or its key is broken — "
                    "do not publish anything signed by it",
                    store=self.store,
                    key_id=self.stored.key_id,
                ) from None
        return signature

    def public_key(self) -> GenericPublicKey:
        return self._public

    @classmethod
    def from_pem(cls, private_pem: bytes, password: bytes | None = None) -> NoReturn:
        raise NotImplementedError("a StoreSigner is obtained from KskStore.signer()")

    def to_pem(self, password: bytes | None = None) -> NoReturn:
        raise NotImplementedError("the private key of an owner KSK never leaves its store")

    def __repr__(self) -> str:
        return f"<StoreSigner {self.store} key {self.stored.key_id} tag {self.stored.key_tag}>"


class KskStore(ABC):
    """Where the zone owner's KSKs live. Use as a context manager or call ``close()``."""

    name: str
    """For messages: ``file /path``, ``pkcs11 token 'label' (module)``, ``kms region``."""
    algorithm: Algorithm

    @abstractmethod
    def list_keys(self) -> list[StoredKey]:
        """Every KSK of this store, oldest first where the store knows the creation time."""

    @abstractmethod
    def generate(self) -> StoredKey:
        """Make a new KSK of ``self.algorithm`` inside the store and return it."""

    @abstractmethod
    def signer(self, key_id: str) -> StoreSigner:
        """A signer for ``key_id`` to pass as ``private_key`` to ``dns.dnssec.sign()``."""

    @abstractmethod
    def close(self) -> None:
        """Release sessions and clients. Idempotent."""

    def get(self, key_id: str) -> StoredKey:
        """The key ``key_id``, or KeyStoreError listing the keys there are."""
        keys = self.list_keys()
        for key in keys:
            if key.key_id == key_id:
                return key
        have = ", ".join(f"{k.key_id} (tag {k.key_tag})" for k in keys) or "none"
        raise KeyStoreError(f"no key {key_id!r}; the store holds: {have}", store=self.name)

    def error(self, message: str, key_id: str | None = None) -> KeyStoreError:
        return KeyStoreError(message, store=self.name, key_id=key_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.algorithm.name}>"


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. datetime.now(UTC)), got {value}")
    return value


def sign_rrset_with(
    rrset: dns.rrset.RRset,
    signers: StoreSigner | Sequence[StoreSigner],
    zone: dns.name.Name | str,
    inception: datetime,
    expiration: datetime,
    *,
    verify: bool = True,
) -> dns.rrset.RRset:
    """The RRSIG RRset over ``rrset`` by each signer (one RRSIG per key, in order).

    Refuses to sign a DNSKEY RRset that does not contain the signing KSK (such a
    signature could never validate). ``verify`` checks every signature against the
    key's DNSKEY before returning it — cheap next to an HSM/KMS round trip.
    """
    origin = zone if isinstance(zone, dns.name.Name) else dns.name.from_text(zone)
    _aware(inception, "inception")
    _aware(expiration, "expiration")
    if expiration <= inception:
        raise ValueError(f"expiration {expiration} is not after inception {inception}")
    owner = rrset.name.derelativize(origin)  # a zone's rrsets may be relative to its origin
    if not owner.is_subdomain(origin):
        raise ValueError(f"{owner} is not in zone {origin}; a KSK of {origin} cannot sign it")
    chosen = [signers] if isinstance(signers, StoreSigner) else list(signers)
    if not chosen:
        raise ValueError("no key to sign with")
    result = dns.rrset.RRset(rrset.name, rrset.rdclass, dns.rdatatype.RRSIG, rrset.rdtype)
    result.update_ttl(rrset.ttl)
    for signer in chosen:
        if rrset.rdtype == dns.rdatatype.DNSKEY and not any(
            Key.from_rdata(rd) == signer.stored.dnskey for rd in rrset
        ):
            raise KeyStoreError(
                f"refusing to sign the DNSKEY RRset of {origin}: it does not contain this "
                f"KSK ({signer.stored.dnskey.short()}), so the signature could never validate; "
                "add the KSK to the set first",
                store=signer.store,
                key_id=signer.stored.key_id,
            )
        rrsig = dns.dnssec.sign(
            rrset,
            private_key=signer,
            signer=origin,
            dnskey=signer.dnskey,
            inception=inception,
            expiration=expiration,
            verify=verify,
            origin=origin,
        )
        result.add(rrsig)
    return result


def sign_rrset(
    rrset: dns.rrset.RRset,
    store: KskStore,
    key_id: str | Sequence[str],
    zone: dns.name.Name | str,
    inception: datetime,
    expiration: datetime,
    *,
    verify: bool = True,
) -> dns.rrset.RRset:
    """Sign ``rrset`` (DNSKEY, CDS, CDNSKEY at the apex of ``zone``) with the store's KSK(s).

    ``key_id`` may name several keys (a KSK rollover signs with old and new); the result
    is one RRSIG RRset with the rrset's owner, class and TTL. To sign many RRsets with
    the same key, get ``store.signer(key_id)`` once and use :func:`sign_rrset_with`.
    """
    ids = [key_id] if isinstance(key_id, str) else list(key_id)
    signers = [store.signer(k) for k in ids]
    return sign_rrset_with(rrset, signers, zone, inception, expiration, verify=verify)


def make_store(config: OwnerKskConfig, *, create: bool = False) -> KskStore:
    """Open the store ``[zones.owner_ksk]`` describes. A file store checks its directory
    (missing: an error, unless ``create`` -- ``ksk init`` only) and every key file, a
    PKCS#11 store logs in to the token; a KMS store first talks to KMS when a key is
    listed, generated or used. A PKCS#11 prefix or KMS alias that matches nothing is an
    empty store, not an error: the controller's check of the store against the zone
    (orchestrator/decide/owner_keys.py) is what refuses to sign with it."""
    algorithm = config.algorithm_number
    if config.store == "file":
        from providers.kskstore.filestore import FileKskStore

        assert config.directory is not None  # enforced by OwnerKskConfig
        return FileKskStore(
            config.directory,
            algorithm=algorithm,
            expect_dnskey=[Key.parse(text) for text in config.expect_dnskey],
            create=create,
        )
    if config.store == "pkcs11":
        from providers.kskstore.pkcs11store import Pkcs11KskStore

        assert config.token_label is not None and config.pin is not None
        return Pkcs11KskStore(
            module=config.module,
            token_label=config.token_label,
            pin=config.pin.get_secret_value(),
            key_label_prefix=config.key_label_prefix,
            algorithm=algorithm,
            module_env=config.module_env,
        )
    from providers.kskstore.kmsstore import KmsKskStore

    assert config.region is not None
    return KmsKskStore(
        region=config.region,
        key_spec=config.key_spec,
        message_type=config.message_type,
        endpoint_url=config.endpoint_url,
        key_ids=config.key_ids,
        alias_prefix=config.alias_prefix,
        algorithm=algorithm,
    )


def ecdsa_raw_signature(r: int, s: int, algorithm: Algorithm) -> bytes:
    """r and s as the fixed-width big-endian concatenation RFC 6605 sec. 4 puts in RRSIGs."""
    octets = ECDSA_PARAMS[algorithm][2]
    return r.to_bytes(octets, "big") + s.to_bytes(octets, "big")
