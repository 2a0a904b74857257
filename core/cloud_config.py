"""``[[providers]]`` of the hosted DNS services reached through a REST API with a token
(deSEC, Cloudflare): where the API is, the token, how long to keep retrying, and the
nameservers where the service serves the zone (read by DNS: the served DNSKEY RRset is
the truth these services' APIs do not fully tell)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from core.config_types import Duration, Fqdn, HostPort, _Strict, is_loopback


class _CloudProvider(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    api_url: str
    token: SecretStr
    nameservers: list[HostPort] = Field(min_length=1)
    ns_names: list[Fqdn] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)  # per HTTP request
    # How long one API call keeps retrying 429s (honouring Retry-After) and 5xx answers
    # before it gives up with an error naming the last failure.
    retry_budget: Duration = timedelta(seconds=60)
    # How long a write may take to show in the API's own reads (these services answer the
    # old RRset for a while after accepting a write); a write not read back by then fails.
    consistency_window: Duration = timedelta(seconds=30)
    # Explicit opt-in for an http:// api_url that is not loopback (the token travels in it).
    allow_plain_http: bool = False

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        if not urlsplit(value).hostname:
            raise ValueError(f"{value!r} names no host")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("empty; set the API token, e.g. token = \"${DESEC_TOKEN}\"")
        return value

    @field_validator("retry_budget")
    @classmethod
    def _budget(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _plain_http(self) -> _CloudProvider:
        host = urlsplit(self.api_url).hostname or ""
        if self.api_url.startswith("http://") and not is_loopback(host) \
                and not self.allow_plain_http:
            raise ValueError(f"api_url: {self.api_url} sends the token unencrypted to {host}; "
                             "use https://, or set allow_plain_http = true if the path is "
                             "trusted")
        return self


class DesecProviderConfig(_CloudProvider):
    """``type = "desec"``: deSEC (desec.io), token auth (``Authorization: Token ...``)."""

    type: Literal["desec"] = "desec"
    api_url: str = "https://desec.io/api/v1"


class CloudflareProviderConfig(_CloudProvider):
    """``type = "cloudflare"``: Cloudflare DNS, API token (``Authorization: Bearer ...``)
    with Zone:DNS:Edit and Zone:Zone Settings:Edit (DNSSEC) on the zone."""

    type: Literal["cloudflare"] = "cloudflare"
    api_url: str = "https://api.cloudflare.com/client/v4"
    # The zone's Cloudflare id; looked up by name (GET /zones?name=) when not given.
    zone_ids: dict[str, str] = Field(default_factory=dict)


class Route53ProviderConfig(_Strict):
    """``type = "route53"``: an Amazon Route 53 public hosted zone, through boto3 (AWS
    credentials from the usual chain: environment, ``profile``, instance/task role).
    Route 53 signs with a KSK it keeps in KMS and a ZSK it manages itself, and takes no
    foreign DNSKEY: it cannot be a Model 2 signer (refused at ``check``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["route53"] = "route53"
    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = None  # a VPC endpoint or a test double; default: AWS's
    # zone → hosted zone id; looked up by name (ListHostedZonesByName) when not given.
    hosted_zone_ids: dict[str, str] = Field(default_factory=dict)
    nameservers: list[HostPort] = Field(min_length=1)
    ns_names: list[Fqdn] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)
    max_attempts: int = Field(default=5, ge=1, le=20)  # botocore's standard retry mode
    # How long a change may stay PENDING before the write fails (Route 53 reports INSYNC
    # once every Route 53 nameserver serves it).
    consistency_window: Duration = timedelta(seconds=120)


class Ns1ProviderConfig(_CloudProvider):
    """``type = "ns1"``: NS1 (IBM NS1 Connect), API key sent as ``X-NSONE-Key``. Foreign
    DNSKEYs go into one external key set of the zone (``key_set``), which the adapter
    owns; other key sets are left alone."""

    type: Literal["ns1"] = "ns1"
    api_url: str = "https://api.nsone.net/v1"
    key_set: str = Field(default="multisigner", pattern=r"^[A-Za-z0-9_.-]+$")
