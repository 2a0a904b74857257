"""KSKs held in AWS KMS (asymmetric ``ECC_NIST_P256`` ``SIGN_VERIFY`` keys).

The store's keys are the configured ``key_ids`` plus every key an alias
``alias/<alias_prefix>-...`` points at; :meth:`KmsKskStore.generate` creates a key
(tagged ``multisigner=owner-ksk``) and such an alias. The key id is the key's ARN.

Signing: ``Sign`` with ``ECDSA_SHA_256`` and ``MessageType`` ``DIGEST`` (the SHA-256 of
the RRSIG signing input is sent; the default, no size limit) or ``RAW`` (the input itself,
at most 4096 bytes; what moto needs, as it hashes again even for DIGEST). KMS returns a
DER ``ECDSA-Sig-Value``; it is turned into the fixed-width r||s RRSIGs carry (RFC 6605).

Every botocore error is turned into a KeyStoreError in :class:`_Kms`, the one client seam.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import boto3
import botocore.config
import botocore.exceptions
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key
from dns.dnssectypes import Algorithm

from core.algorithms import ECDSA_PARAMS
from providers.kskstore.base import (
    KeyStoreError,
    KskStore,
    StoredKey,
    StoreSigner,
    algorithm_of,
    describe_key_type,
    dnskey_of,
    ecdsa_raw_signature,
)

RAW_LIMIT = 4096
TAG = {"TagKey": "multisigner", "TagValue": "owner-ksk"}
_SPEC_OF = {
    Algorithm.ECDSAP256SHA256: "ECC_NIST_P256",
    Algorithm.ECDSAP384SHA384: "ECC_NIST_P384",
}
_SIGNING_OF = {
    Algorithm.ECDSAP256SHA256: "ECDSA_SHA_256",
    Algorithm.ECDSAP384SHA384: "ECDSA_SHA_384",
}
_TIME = "%Y%m%dT%H%M%SZ"
_GONE = ("PendingDeletion", "PendingReplicaDeletion")


class _Kms:
    """Every KMS call, and the one place botocore errors become KeyStoreErrors."""

    def __init__(self, client: Any, store: str, region: str) -> None:
        self.client = client
        self.store = store
        self.region = region

    def call(self, operation: str, key_id: str | None = None, **params: Any) -> dict[str, Any]:
        method = getattr(self.client, _snake(operation))
        try:
            result: dict[str, Any] = method(**params)
        except botocore.exceptions.ClientError as exc:
            raise self._mapped(exc, operation, key_id) from None
        except botocore.exceptions.NoCredentialsError:
            raise KeyStoreError(
                "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, or run with an instance/task role",
                store=self.store,
                key_id=key_id,
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise KeyStoreError(
                f"KMS {operation} failed: {exc}", store=self.store, key_id=key_id
            ) from None
        return result

    def _mapped(
        self, exc: botocore.exceptions.ClientError, operation: str, key_id: str | None
    ) -> KeyStoreError:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        key = "the key" if key_id else "KMS"  # the message starts with the key id
        if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
            text = (
                f"access denied: the AWS principal may not call kms:{operation} on {key} "
                f"({message}); grant it in the key policy or IAM policy"
            )
        elif code == "DisabledException":
            text = (
                f"{key} is disabled; enable it (`aws kms enable-key --key-id {key_id}`) or "
                "stop using it"
            )
        elif code == "NotFoundException":
            text = f"{key} does not exist in region {self.region} ({message})"
        elif code == "KMSInvalidStateException":
            text = f"{key} is in a state that does not allow {operation} ({message})"
        elif code == "InvalidKeyUsageException":
            text = f"{key} is not a SIGN_VERIFY key for ECDSA ({message})"
        elif code in (
            "KeyUnavailableException",
            "DependencyTimeoutException",
            "KMSInternalException",
            "ThrottlingException",
        ):
            text = f"KMS {operation} on {key} failed for now ({code}: {message}); retry later"
        else:
            text = f"KMS {operation} on {key} failed: {code}: {message}"
        return KeyStoreError(text, store=self.store, key_id=key_id)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


class KmsKskStore(KskStore):
    """Owner KSKs in AWS KMS in ``region``."""

    def __init__(
        self,
        *,
        region: str,
        key_spec: str = "ECC_NIST_P256",
        message_type: Literal["RAW", "DIGEST"] = "DIGEST",
        endpoint_url: str | None = None,
        key_ids: Iterable[str] = (),
        alias_prefix: str = "multisigner-ksk",
        algorithm: Algorithm | int = Algorithm.ECDSAP256SHA256,
        client: Any = None,
    ) -> None:
        self.name = f"kms {region}" + (f" ({endpoint_url})" if endpoint_url else "")
        self.algorithm = Algorithm(algorithm)
        if self.algorithm not in _SPEC_OF:
            raise self.error(f"{self.algorithm.name} keys are not supported; use ECDSAP256SHA256")
        if key_spec != _SPEC_OF[self.algorithm]:
            raise self.error(
                f"key_spec {key_spec} does not fit {self.algorithm.name}; use "
                + _SPEC_OF[self.algorithm]
            )
        if message_type not in ("RAW", "DIGEST"):
            raise self.error(f"message_type must be RAW or DIGEST, not {message_type!r}")
        self.key_spec = key_spec
        self.message_type = message_type
        self.key_ids = list(key_ids)
        self.alias_prefix = alias_prefix
        if client is None:
            client = boto3.client(
                "kms",
                region_name=region,
                endpoint_url=endpoint_url,
                config=botocore.config.Config(
                    retries={"mode": "standard", "max_attempts": 5},
                    connect_timeout=10,
                    read_timeout=30,
                ),
            )
        self._kms = _Kms(client, self.name, region)
        self._public: dict[str, StoredKey] = {}

    # -- keys ---------------------------------------------------------------------------

    def _alias_targets(self) -> list[str]:
        prefix = f"alias/{self.alias_prefix}-"
        targets: list[str] = []
        params: dict[str, Any] = {}
        while True:
            page = self._kms.call("ListAliases", **params)
            targets += [
                a["TargetKeyId"]
                for a in page.get("Aliases", [])
                if a.get("AliasName", "").startswith(prefix) and a.get("TargetKeyId")
            ]
            if not page.get("Truncated"):
                return targets
            params = {"Marker": page["NextMarker"]}

    def _checked(self, key_id: str, *, configured: bool) -> StoredKey | None:
        """The key if usable; None for a key on its way out found only by alias."""
        meta = self._kms.call("DescribeKey", key_id, KeyId=key_id)["KeyMetadata"]
        arn = meta["Arn"]
        state = meta.get("KeyState", "Enabled" if meta.get("Enabled") else "Disabled")
        if state in _GONE and not configured:
            return None
        spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec")
        if spec != self.key_spec:
            raise self.error(
                f"the key has KeySpec {spec}, but this store signs with {self.algorithm.name} "
                f"and needs {self.key_spec}; use an {self.key_spec} SIGN_VERIFY key "
                "(an asymmetric key's spec cannot be changed)",
                arn,
            )
        if meta.get("KeyUsage") != "SIGN_VERIFY":
            raise self.error(
                f"the key has KeyUsage {meta.get('KeyUsage')}, not SIGN_VERIFY; it cannot sign",
                arn,
            )
        if state == "Disabled":
            raise self.error(
                f"the key is disabled; enable it (`aws kms enable-key --key-id {arn}`) or "
                + ("remove it from owner_ksk.key_ids" if configured else "delete its alias"),
                arn,
            )
        if state != "Enabled":
            raise self.error(f"the key is in state {state} and cannot sign", arn)
        if arn not in self._public:
            der = self._kms.call("GetPublicKey", arn, KeyId=arn)["PublicKey"]
            public = load_der_public_key(bytes(der))
            if algorithm_of(public) != self.algorithm:
                raise self.error(
                    f"KMS returned a {describe_key_type(public)} public key for a "
                    f"{self.key_spec} key",
                    arn,
                )
            created = meta.get("CreationDate")
            if isinstance(created, datetime):
                created = created.astimezone(UTC)
            self._public[arn] = StoredKey(
                key_id=arn, dnskey=dnskey_of(public, self.algorithm), created=created
            )
        return self._public[arn]

    def list_keys(self) -> list[StoredKey]:
        found: dict[str, StoredKey] = {}
        candidates = [(k, True) for k in self.key_ids] + [(k, False) for k in self._alias_targets()]
        for key_id, configured in candidates:
            stored = self._checked(key_id, configured=configured)
            if stored is not None:
                found.setdefault(stored.key_id, stored)
        return sorted(
            found.values(),
            key=lambda k: (k.created or datetime.min.replace(tzinfo=UTC), k.key_id),
        )

    def generate(self) -> StoredKey:
        created = self._kms.call(
            "CreateKey",
            KeySpec=self.key_spec,
            KeyUsage="SIGN_VERIFY",
            Description=f"multisigner owner KSK ({self.algorithm.name})",
            Tags=[TAG],
        )["KeyMetadata"]
        arn = created["Arn"]
        stamp = datetime.now(UTC).strftime(_TIME)
        taken = set()
        page: dict[str, Any] = {}
        while True:
            listing = self._kms.call("ListAliases", **page)
            taken |= {a.get("AliasName") for a in listing.get("Aliases", [])}
            if not listing.get("Truncated"):
                break
            page = {"Marker": listing["NextMarker"]}
        alias, n = f"alias/{self.alias_prefix}-{stamp}", 1
        while alias in taken:
            n += 1
            alias = f"alias/{self.alias_prefix}-{stamp}-{n}"
        try:
            self._kms.call("CreateAlias", arn, AliasName=alias, TargetKeyId=arn)
        except KeyStoreError as exc:
            raise self.error(
                f"created the key but could not give it the alias {alias} ({exc}); add the "
                "key to owner_ksk.key_ids or schedule its deletion",
                arn,
            ) from None
        stored = self._checked(arn, configured=True)
        assert stored is not None
        return stored

    def signer(self, key_id: str) -> StoreSigner:
        stored = self._checked(key_id, configured=True)
        assert stored is not None
        arn = stored.key_id
        hash_name = ECDSA_PARAMS[self.algorithm][1]
        signing_algorithm = _SIGNING_OF[self.algorithm]

        def raw_sign(data: bytes, deterministic: bool) -> bytes:
            if self.message_type == "DIGEST":
                message = hashlib.new(hash_name, data).digest()
            elif len(data) > RAW_LIMIT:
                raise self.error(
                    f"the data to sign is {len(data)} bytes; KMS takes at most {RAW_LIMIT} "
                    "with MessageType RAW — set owner_ksk.message_type = 'DIGEST'",
                    arn,
                )
            else:
                message = data
            answer = self._kms.call(
                "Sign",
                arn,
                KeyId=arn,
                Message=message,
                MessageType=self.message_type,
                SigningAlgorithm=signing_algorithm,
            )
            try:
                r, s = decode_dss_signature(bytes(answer["Signature"]))
            except (KeyError, ValueError) as exc:
                raise self.error(f"KMS returned no DER ECDSA signature ({exc})", arn) from None
            return ecdsa_raw_signature(r, s, self.algorithm)

        return StoreSigner(stored, raw_sign=raw_sign, store=self.name)

    def close(self) -> None:
        self._kms.close()
