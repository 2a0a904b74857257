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
