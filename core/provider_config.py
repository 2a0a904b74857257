"""``[[providers]]``: how to reach each provider (its API or command line, and the
nameservers where it serves its zones)."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from core.cloud_config import (
    CloudflareProviderConfig,
    DesecProviderConfig,
    Ns1ProviderConfig,
    Route53ProviderConfig,
)
from core.config_types import Duration, Fqdn, HostPort, _Strict
from core.config_types import is_loopback as _is_loopback
from core.plugin_config import ENTRY_POINT_GROUP, PluginProviderConfig


class ProviderConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["powerdns"]
    api_url: str
    api_key: SecretStr
    server_id: str = "localhost"
    nameservers: list[HostPort] = Field(min_length=1)
    ns_names: list[Fqdn] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)
    # http:// to anything but loopback sends the API key in clear: refused unless set.
    allow_plain_http: bool = False
    ca_file: Path | None = None  # CA bundle to trust for an https:// api_url (default: system)
    # HTTP(S)_PROXY / NO_PROXY / SSL_CERT_FILE from the environment apply only when set: a
    # stray proxy variable must not silently route the API key through another host.
    proxy_from_env: bool = False

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a port that is no number or out of range
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid URL ({exc})") from None
        if not parts.hostname:
            raise ValueError(f"{value!r} names no host")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("empty; set the provider's API key (sent as X-API-Key), e.g. "
                             "api_key = \"${P0_API_KEY}\"")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value}: no such file (a PEM bundle of the CAs to trust for "
                             "api_url)")
        return value

    @model_validator(mode="after")
    def _plain_http(self) -> ProviderConfig:
        host = urlsplit(self.api_url).hostname or ""
        if (self.api_url.startswith("http://") and not _is_loopback(host)
                and not self.allow_plain_http):
            raise ValueError(
                f"api_url: {self.api_url} sends the API key unencrypted to {host}; use "
                "https:// (ca_file names the CA if it is private), or set allow_plain_http "
                "= true on this provider if the network path is trusted")
        return self


class KnotProviderConfig(_Strict):
    """``[[providers]] type = "knot"``: Knot DNS driven through keymgr/knotc (Model 1,
    offline KSK)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["knot"] = "knot"
    knot_config: Path  # passed as -c to keymgr and knotc
    command_prefix: list[str] = Field(default_factory=list)  # e.g. ["ssh", "dns1"]
    nameservers: list[HostPort] = Field(min_length=1)
    ns_names: list[Fqdn] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)  # per keymgr/knotc command
    # How the SKR reaches keymgr: "file" = a temp file (mode 0644: an SKR holds public keys
    # and signatures only) in ``skr_directory`` (default: the system temp dir), which must
    # be readable by the user keymgr runs as; "stdin" = piped to ``/dev/stdin`` (works
    # through an ``ssh`` prefix, where a local file would not exist).
    skr_transfer: Literal["file", "stdin"] = "file"
    skr_directory: Path | None = None


class Rfc2136ProviderConfig(_Strict):
    """``[[providers]] type = "rfc2136"``: a signer that signs with its own keys and takes
    foreign DNSKEY/CDS/CDNSKEY, NS and CSYNC by TSIG-signed DNS UPDATE (RFC 2136) over TCP
    (Model 2; e.g. Knot DNS with ``dnskey-management: incremental``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["rfc2136"] = "rfc2136"
    server: HostPort  # where UPDATEs go (TCP), usually the signer's primary
    tsig_name: Fqdn
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = "hmac-sha256"
    tsig_secret: SecretStr  # base64, as in the server's key statement
    nameservers: list[HostPort] = Field(min_length=1)
    ns_names: list[Fqdn] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)  # per query or UPDATE
    # The signer's pre-publication window for its own key rollovers: from publishing a
    # successor to signing with it (Knot: dnskey-ttl + propagation-delay). The daemon
    # polls often enough to import the successor everywhere within it.
    prepublish_window: Duration | None = None

    @field_validator("tsig_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if not text:
            raise ValueError("empty; set the TSIG key's base64 secret, e.g. "
                             "tsig_secret = \"${U0_TSIG}\"")
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 (give the secret exactly as in the server's TSIG "
                             "key statement)") from None
        return value


# The adapters shipped with multisigner; any other ``type`` must name an adapter installed
# in the ``multisigner.providers`` entry-point group (docs/providers/writing-an-adapter.md).
BUILTIN_TYPES = ("powerdns", "knot", "rfc2136", "desec", "cloudflare", "route53", "ns1")


def _provider_tag(value: Any) -> str:
    """Which model validates a ``[[providers]]`` table: a built-in type's own, else the
    generic plugin model (which checks that an installed adapter claims the type)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in BUILTIN_TYPES else "plugin"


AnyProvider = Annotated[
    Annotated[ProviderConfig, Tag("powerdns")]
    | Annotated[KnotProviderConfig, Tag("knot")]
    | Annotated[Rfc2136ProviderConfig, Tag("rfc2136")]
    | Annotated[DesecProviderConfig, Tag("desec")]
    | Annotated[CloudflareProviderConfig, Tag("cloudflare")]
    | Annotated[Route53ProviderConfig, Tag("route53")]
    | Annotated[Ns1ProviderConfig, Tag("ns1")]
    | Annotated[PluginProviderConfig, Tag("plugin")],
    Discriminator(_provider_tag),
]
AnyProviderConfig = (ProviderConfig | KnotProviderConfig | Rfc2136ProviderConfig
                     | DesecProviderConfig | CloudflareProviderConfig | Route53ProviderConfig
                     | Ns1ProviderConfig | PluginProviderConfig)

__all__ = ["BUILTIN_TYPES", "ENTRY_POINT_GROUP", "AnyProvider", "AnyProviderConfig",
           "CloudflareProviderConfig", "DesecProviderConfig", "KnotProviderConfig",
           "Ns1ProviderConfig", "PluginProviderConfig", "ProviderConfig", "Rfc2136ProviderConfig",
           "Route53ProviderConfig"]
