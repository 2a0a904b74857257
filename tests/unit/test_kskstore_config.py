"""``[zones.owner_ksk]`` as pydantic validates it."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from providers.kskstore import OwnerKskConfig


def load(text: str) -> OwnerKskConfig:
    return OwnerKskConfig.model_validate(tomllib.loads(text)["owner_ksk"])


def test_file_store_from_toml() -> None:
    config = load('[owner_ksk]\nstore = "file"\ndirectory = "/var/lib/multisigner/keys"\n')
    assert config.store == "file" and str(config.directory) == "/var/lib/multisigner/keys"
    assert config.algorithm == "ECDSAP256SHA256" and int(config.algorithm_number) == 13


def test_pkcs11_store_defaults_and_secret_pin() -> None:
    config = load('[owner_ksk]\nstore = "pkcs11"\ntoken_label = "ksk"\npin = "1234"\n')
    assert config.module == "/usr/lib/softhsm/libsofthsm2.so"
    assert config.key_label_prefix == "multisigner-ksk"
    assert config.pin is not None and config.pin.get_secret_value() == "1234"
    assert "1234" not in repr(config) and "1234" not in str(config)


def test_kms_store_defaults() -> None:
    config = load('[owner_ksk]\nstore = "kms"\nregion = "eu-west-1"\n')
    assert config.key_spec == "ECC_NIST_P256" and config.message_type == "DIGEST"
    assert config.key_ids == [] and config.endpoint_url is None


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"store": "file"}, "needs directory"),
        ({"store": "pkcs11", "token_label": "x"}, "needs pin"),
        ({"store": "kms"}, "needs region"),
        (
            {"store": "file", "directory": "/k", "region": "eu-west-1"},
            "not used by store = 'file': region \\(only for store = 'kms'\\)",
        ),
        (
            {"store": "kms", "region": "eu-west-1", "pin": "1"},
            "pin \\(only for store = 'pkcs11'\\)",
        ),
        ({"store": "file", "directory": "/k", "colour": "red"}, "Extra inputs"),
        ({"store": "disk", "directory": "/k"}, "'file', 'pkcs11' or 'kms'"),
        ({"store": "file", "directory": "/k", "algorithm": "RSASHA1"}, "not an algorithm"),
        ({"store": "file", "directory": "/k", "algorithm": "FOO"}, "not an algorithm"),
        (
            {"store": "pkcs11", "token_label": "x", "pin": "1", "algorithm": "ED25519"},
            "ECDSA keys only",
        ),
        (
            {"store": "kms", "region": "eu-west-1", "algorithm": "ECDSAP384SHA384"},
            "use ECC_NIST_P384",
        ),
        ({"store": "kms", "region": "eu-west-1", "message_type": "HASH"}, "RAW"),
        ({"store": "kms", "region": "eu-west-1", "endpoint_url": "localhost:4566"}, "http"),
        ({"store": "pkcs11", "token_label": "x", "pin": ""}, "PIN is empty"),
        (
            {"store": "file", "directory": "/k", "expect_dnskey": ["257 3 13 !!"]},
            "expect_dnskey\\[0\\]",
        ),
    ],
)
def test_invalid_tables(table: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        OwnerKskConfig.model_validate(table)


def test_algorithm_is_normalised() -> None:
    config = OwnerKskConfig(store="file", directory="/k", algorithm="ed25519")
    assert config.algorithm == "ED25519"
    assert OwnerKskConfig(store="file", directory="/k", algorithm="14").algorithm == (
        "ECDSAP384SHA384"
    )


def test_expect_dnskey_must_fit_the_algorithm() -> None:
    with pytest.raises(ValidationError, match="not of algorithm ED25519"):
        OwnerKskConfig(
            store="file",
            directory="/k",
            algorithm="ED25519",
            expect_dnskey=["257 3 13 " + "A" * 88],
        )


def test_frozen() -> None:
    config = OwnerKskConfig(store="kms", region="eu-west-1")
    with pytest.raises(ValidationError):
        config.region = "us-east-1"  # type: ignore[misc]
