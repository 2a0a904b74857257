"""The AWS KMS owner-KSK store.

AWS KMS cannot run here, so it is faked: mostly with moto (``mock_aws``), which
implements KMS from AWS's documented API; for what moto does not do as KMS does —
``MessageType=DIGEST`` (moto hashes the digest again), refusing to sign with a disabled
key, AccessDenied — with botocore's ``Stubber`` (documented error codes and response
shapes, validated against the service model) or a small fake of the documented DIGEST
semantics. Signing through moto must therefore use ``message_type = "RAW"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from moto import mock_aws

from bench.kskstore_bench import signatures_per_second, typical_dnskey_rrset
from providers.kskstore import (
    KeyStoreError,
    OwnerKskConfig,
    make_store,
    sign_rrset,
    sign_rrset_with,
)
from providers.kskstore.kmsstore import TAG, KmsKskStore

REGION = "eu-west-1"
ZONE = dns.name.from_text("example.test.")
NOW = datetime.now(UTC).replace(microsecond=0)
INCEPTION, EXPIRATION = NOW - timedelta(hours=1), NOW + timedelta(days=14)


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


def raw_store(**kwargs: Any) -> KmsKskStore:
    return KmsKskStore(region=REGION, message_type="RAW", **kwargs)


def key_uuid(arn: str) -> str:
    """moto's DisableKey/ScheduleKeyDeletion take the key id only, not the ARN (KMS takes both)."""
    return arn.rsplit("/", 1)[1]


def validate(rrset: dns.rrset.RRset, rrsigs: dns.rrset.RRset, keys: dns.rrset.RRset) -> None:
    dns.dnssec.validate(rrset, rrsigs, {ZONE: keys}, now=NOW.timestamp())


def zsk_text() -> str:
    private = ec.generate_private_key(ec.SECP256R1())
    return dns.dnssec.make_dnskey(private.public_key(), 13, 256).to_text()


def test_generate_creates_a_tagged_aliased_p256_key(kms: Any) -> None:
    with raw_store() as store:
        ksk = store.generate()
        assert ksk.key_id.startswith(f"arn:aws:kms:{REGION}:")
        assert ksk.dnskey.flags == 257 and ksk.dnskey.algorithm == 13
        assert ksk.created is not None
        meta = kms.describe_key(KeyId=ksk.key_id)["KeyMetadata"]
        assert (meta["KeySpec"], meta["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
        assert TAG in kms.list_resource_tags(KeyId=ksk.key_id)["Tags"]
        aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=ksk.key_id)["Aliases"]]
        assert len(aliases) == 1 and aliases[0].startswith("alias/multisigner-ksk-")
        assert [k.key_id for k in store.list_keys()] == [ksk.key_id]


def test_list_keys_finds_aliased_and_configured_keys_once(kms: Any) -> None:
    outside = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")  # not ours: no alias
    made = raw_store().generate()
    second = raw_store().generate()  # same second: the alias gets a suffix
    store = raw_store(key_ids=[outside["KeyId"], made.key_id])
    assert {k.key_id for k in store.list_keys()} == {outside["Arn"], made.key_id, second.key_id}


def test_sign_and_validate_raw(kms: Any) -> None:
    store = raw_store()
    ksk = store.generate()
    rrset = dns.rrset.from_text(
        ZONE,
        3600,
        dns.rdataclass.IN,
        dns.rdatatype.DNSKEY,
        ksk.dnskey.text,
        zsk_text(),
        zsk_text(),
    )
    first = sign_rrset(rrset, store, ksk.key_id, ZONE, INCEPTION, EXPIRATION)
    second = sign_rrset(rrset, store, ksk.key_id, ZONE, INCEPTION, EXPIRATION)
    (a,), (b,) = first, second
    assert a.key_tag == ksk.key_tag and len(a.signature) == 64
    assert a.signature != b.signature  # KMS ECDSA is randomized
    validate(rrset, first, rrset)
    validate(rrset, second, rrset)


def test_make_store_and_bench(kms: Any) -> None:
    config = OwnerKskConfig(store="kms", region=REGION, message_type="RAW")
    with make_store(config) as store:
        ksk = store.generate()
        assert signatures_per_second(store, ksk.key_id, seconds=0.05) > 0


def test_an_rsa_key_is_refused(kms: Any) -> None:
    rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    store = raw_store(key_ids=[rsa["KeyId"]])
    for action in (store.list_keys, lambda: store.signer(rsa["KeyId"])):
        with pytest.raises(KeyStoreError) as caught:
            action()
        message = str(caught.value)
        assert rsa["Arn"] in message and "RSA_2048" in message and "ECC_NIST_P256" in message


def test_an_aliased_symmetric_key_is_refused(kms: Any) -> None:
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/multisigner-ksk-x", TargetKeyId=key["KeyId"])
    with pytest.raises(KeyStoreError, match="SYMMETRIC_DEFAULT"):
        raw_store().list_keys()


def test_a_disabled_key_is_an_error_naming_it(kms: Any) -> None:
    store = raw_store()
    ksk = store.generate()
    kms.disable_key(KeyId=key_uuid(ksk.key_id))
    for action in (store.list_keys, lambda: store.signer(ksk.key_id)):
        with pytest.raises(KeyStoreError) as caught:
            action()
        assert ksk.key_id in str(caught.value) and "disabled" in str(caught.value)
        assert "enable-key" in str(caught.value)


def test_a_key_pending_deletion_found_by_alias_is_skipped(kms: Any) -> None:
    old = raw_store().generate()
    kms.schedule_key_deletion(KeyId=key_uuid(old.key_id), PendingWindowInDays=7)
    assert raw_store().list_keys() == []
    with pytest.raises(KeyStoreError, match="PendingDeletion"):
        raw_store(key_ids=[old.key_id]).list_keys()


def test_an_unknown_key(kms: Any) -> None:
    missing = "1234abcd-12ab-34cd-56ef-1234567890ab"
    with pytest.raises(KeyStoreError, match=f"{missing}.*does not exist in region {REGION}"):
        raw_store().signer(missing)


def test_raw_messages_over_4096_bytes_are_refused(kms: Any) -> None:
    store = raw_store()
    ksk = store.generate()
    big = dns.rrset.from_text(
        ZONE,
        300,
        dns.rdataclass.IN,
        dns.rdatatype.TXT,
        *[f'"{i:03d}{"x" * 247}"' for i in range(20)],
    )
    with pytest.raises(KeyStoreError, match=r"at most 4096 .* 'DIGEST'"):
        sign_rrset(big, store, ksk.key_id, ZONE, INCEPTION, EXPIRATION)


# -- botocore Stubber: documented error codes moto does not produce ------------------------

ARN = f"arn:aws:kms:{REGION}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _public_der() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _stubbed_client(sign_error: tuple[str, str] | None = None, **meta: Any) -> Any:
    """A botocore client answering DescribeKey/GetPublicKey (and Sign with an error)."""
    client = boto3.client(
        "kms", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    metadata = {
        "KeyId": ARN.rsplit("/", 1)[1],
        "Arn": ARN,
        "KeySpec": "ECC_NIST_P256",
        "KeyUsage": "SIGN_VERIFY",
        "KeyState": "Enabled",
        "Enabled": True,
        **meta,
    }
    stub.add_response("describe_key", {"KeyMetadata": metadata})
    stub.add_response("get_public_key", {"KeyId": ARN, "PublicKey": _public_der()})
    if sign_error:
        stub.add_client_error(
            "sign", service_error_code=sign_error[0], service_message=sign_error[1]
        )
    stub.activate()
    return client


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("AccessDeniedException", "access denied: the AWS principal may not call kms:Sign"),
        ("DisabledException", "is disabled; enable it"),
        ("KMSInvalidStateException", "in a state that does not allow Sign"),
        ("KeyUnavailableException", "retry later"),
    ],
)
def test_sign_errors_name_the_key(code: str, expected: str) -> None:
    store = KmsKskStore(region=REGION, client=_stubbed_client((code, "documented error")))
    signer = store.signer(ARN)
    rrset = typical_dnskey_rrset(signer.stored.dnskey.text)
    with pytest.raises(KeyStoreError) as caught:
        sign_rrset_with(rrset, signer, ZONE, INCEPTION, EXPIRATION)
    message = str(caught.value)
    assert ARN in message and expected in message


def test_a_key_agreement_key_is_refused() -> None:
    store = KmsKskStore(region=REGION, client=_stubbed_client(KeyUsage="KEY_AGREEMENT"))
    with pytest.raises(KeyStoreError, match="KeyUsage KEY_AGREEMENT, not SIGN_VERIFY"):
        store.signer(ARN)


class DigestKms:
    """KMS Sign as documented for MessageType=DIGEST: the message *is* the SHA-256 digest
    and is signed as such (moto hashes it again instead)."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.messages: list[tuple[bytes, str]] = []

    def describe_key(self, KeyId: str) -> dict[str, Any]:  # noqa: N803 - boto3 names
        return {
            "KeyMetadata": {
                "KeyId": KeyId,
                "Arn": ARN,
                "KeySpec": "ECC_NIST_P256",
                "KeyUsage": "SIGN_VERIFY",
                "KeyState": "Enabled",
            }
        }

    def get_public_key(self, KeyId: str) -> dict[str, Any]:  # noqa: N803
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"KeyId": ARN, "PublicKey": der}

    def sign(self, **call: Any) -> dict[str, Any]:
        assert (call["KeyId"], call["MessageType"], call["SigningAlgorithm"]) == (
            ARN,
            "DIGEST",
            "ECDSA_SHA_256",
        )
        message = call["Message"]
        self.messages.append((message, call["MessageType"]))
        signature = self.private.sign(message, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return {"KeyId": ARN, "Signature": signature, "SigningAlgorithm": "ECDSA_SHA_256"}

    def close(self) -> None:
        pass


def test_digest_mode_sends_the_sha256_of_the_signing_input() -> None:
    fake = DigestKms()
    store = KmsKskStore(region=REGION, client=fake)  # message_type defaults to DIGEST
    signer = store.signer(ARN)
    rrset = typical_dnskey_rrset(signer.stored.dnskey.text)
    rrsigs = sign_rrset_with(rrset, signer, ZONE, INCEPTION, EXPIRATION)
    validate(rrset, rrsigs, rrset)
    ((message, kind),) = fake.messages
    assert kind == "DIGEST" and len(message) == 32
    (rrsig,) = rrsigs
    signed = dns.dnssec._make_rrsig_signature_data(rrset, rrsig)  # what dnspython signs
    assert message == hashlib.sha256(signed).digest()
