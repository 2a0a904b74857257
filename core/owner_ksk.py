"""``[zones.owner_ksk]``: where a Model 1 zone owner's KSKs live (docs/configuration.md).

One flat table, ``store`` picks the kind; a key that belongs to another kind of store is
an error rather than silently ignored, so a typo in ``store`` cannot make the controller
generate keys somewhere unexpected.

    store = "file"     directory = "/var/lib/multisigner/keys"  [expect_dnskey = ["257 3 13 ..."]]
    store = "pkcs11"   module, token_label, pin = "${HSM_PIN}", [key_label_prefix,
                       module_env = {SOFTHSM2_CONF = "/etc/softhsm/softhsm2.conf"}]
    store = "kms"      region, [key_spec, message_type, endpoint_url, key_ids, alias_prefix]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from dns.dnssectypes import Algorithm
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from core.algorithms import ECDSA_PARAMS, SIGNING_ALGORITHMS, parse_algorithm
from core.keys import Key

DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_PREFIX = "multisigner-ksk"
KMS_KEY_SPECS: dict[str, Algorithm] = {
    "ECC_NIST_P256": Algorithm.ECDSAP256SHA256,
    "ECC_NIST_P384": Algorithm.ECDSAP384SHA384,
}

_FIELDS_OF: dict[str, frozenset[str]] = {
    "file": frozenset({"directory", "expect_dnskey"}),
    "pkcs11": frozenset({"module", "token_label", "pin", "key_label_prefix", "module_env"}),
    "kms": frozenset(
        {"region", "key_spec", "message_type", "endpoint_url", "key_ids", "alias_prefix"}
    ),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "file": ("directory",),
    "pkcs11": ("token_label", "pin"),
    "kms": ("region",),
}
_LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OwnerKskConfig(BaseModel):
    """The owner-KSK store of one Model 1 zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["file", "pkcs11", "kms"]
    algorithm: str = "ECDSAP256SHA256"
    # file
    directory: Path | None = None
    expect_dnskey: list[str] = Field(default_factory=list)
    # pkcs11
    module: str = DEFAULT_PKCS11_MODULE
    token_label: str | None = Field(default=None, min_length=1, max_length=32)
    pin: SecretStr | None = None
    key_label_prefix: str = Field(default=DEFAULT_PREFIX, pattern=_LABEL, max_length=40)
    # Environment variables set (os.environ) before the module is first loaded in this
    # process: many modules read their configuration from one (SoftHSM2: SOFTHSM2_CONF).
    module_env: dict[str, str] = Field(default_factory=dict)
    # kms
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]+$")
    key_spec: Literal["ECC_NIST_P256", "ECC_NIST_P384"] = "ECC_NIST_P256"
    message_type: Literal["RAW", "DIGEST"] = "DIGEST"
    endpoint_url: str | None = None
    key_ids: list[str] = Field(default_factory=list)
    alias_prefix: str = Field(default=DEFAULT_PREFIX, pattern=r"^[A-Za-z0-9/_-]+$", max_length=200)

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        try:
            number = parse_algorithm(value)
        except ValueError:
            number = None
        if number is None or number not in SIGNING_ALGORITHMS:
            raise ValueError(
                f"{value!r} is not an algorithm an owner KSK store can hold; use one of "
                + ", ".join(a.name for a in SIGNING_ALGORITHMS)
            )
        return str(number.name)

    @field_validator("expect_dnskey")
    @classmethod
    def _dnskeys(cls, value: list[str]) -> list[str]:
        out = []
        for i, text in enumerate(value):
            try:
                out.append(Key.parse(text).text)
            except Exception as exc:
                raise ValueError(f"expect_dnskey[{i}] is not a DNSKEY ({exc})") from None
        return out

    @field_validator("pin")
    @classmethod
    def _pin(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("the PIN is empty (is the ${VAR} it comes from set?)")
        return value

    @field_validator("module_env")
    @classmethod
    def _module_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not an environment variable name (letters, digits, _; not "
                    "starting with a digit)"
                )
            if "\0" in text:
                raise ValueError(f"the value of {name} contains a NUL character")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _per_store(self) -> OwnerKskConfig:
        foreign = sorted(
            f"{name} (only for store = {kind!r})"
            for kind, names in _FIELDS_OF.items()
            if kind != self.store
            for name in names & self.model_fields_set
        )
        if foreign:
            raise ValueError(
                f"not used by store = {self.store!r}: {', '.join(foreign)}; remove it or fix "
                "'store'"
            )
        missing = [name for name in _REQUIRED[self.store] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"store = {self.store!r} needs {', '.join(missing)}")
        algorithm = self.algorithm_number
        if self.store in ("pkcs11", "kms") and algorithm not in ECDSA_PARAMS:
            raise ValueError(
                f"store = {self.store!r} holds ECDSA keys only "
                "(ECDSAP256SHA256 or ECDSAP384SHA384), not " + algorithm.name
            )
        if self.store == "kms" and KMS_KEY_SPECS[self.key_spec] != algorithm:
            raise ValueError(
                f"key_spec {self.key_spec} does not fit algorithm {algorithm.name}; use "
                + next(spec for spec, alg in KMS_KEY_SPECS.items() if alg == algorithm)
            )
        for key in self.expect_dnskey:
            if Key(key).algorithm != algorithm:
                raise ValueError(
                    f"expect_dnskey {Key(key).short()} is not of algorithm {algorithm.name}"
                )
        return self

    @property
    def algorithm_number(self) -> Algorithm:
        return parse_algorithm(self.algorithm)
