"""Every Route 53 call, and the one place botocore errors become ProviderErrors.

boto3 is synchronous: each call runs in a worker thread. Throttling is retried by
botocore itself (``retries = {"mode": "standard"}``, ``max_attempts``); what is left
when it gives up is reported with the IAM action the call needed, so a missing
permission reads as ``route53:GetDNSSEC`` rather than as a stack trace.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import boto3
import botocore.config
import botocore.exceptions
from botocore import xform_name

from core.config import Route53ProviderConfig
from core.errors import ProviderAuthError, ProviderError, ProviderUnreachable, ZoneMissing

_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
_CREDENTIALS = ("InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken",
                "SignatureDoesNotMatch", "InvalidSignatureException")
_BUSY = ("Throttling", "ThrottlingException", "PriorRequestNotComplete",
         "ServiceUnavailable", "InternalFailure")


class _Where(TypedDict):
    provider: str
    zone: str | None
    endpoint: str


def make_client(config: Route53ProviderConfig) -> Any:
    session = boto3.session.Session(profile_name=config.profile)
    seconds = config.timeout.total_seconds()
    return session.client("route53", region_name=config.region,
                          endpoint_url=config.endpoint_url,
                          config=botocore.config.Config(
                              retries={"mode": "standard",
                                       "max_attempts": config.max_attempts},
                              connect_timeout=seconds, read_timeout=seconds))


class Route53Api:
    def __init__(self, client: Any, provider: str) -> None:
        self.client = client
        self.provider = provider

    async def call(self, operation: str, zone: str | None = None, **params: Any
                   ) -> dict[str, Any]:
        method = getattr(self.client, xform_name(operation))
        try:
            result: dict[str, Any] = await asyncio.to_thread(method, **params)
        except botocore.exceptions.ClientError as exc:
            raise self._mapped(exc, operation, zone) from None
        except botocore.exceptions.NoCredentialsError:
            raise ProviderAuthError(
                "no AWS credentials found; set AWS_PROFILE (or this provider's profile) or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an instance/task role",
                provider=self.provider, zone=zone, endpoint=operation) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ProviderUnreachable(f"Route 53 {operation} failed: {exc}",
                                      provider=self.provider, zone=zone,
                                      endpoint=operation) from None
        return result

    def _mapped(self, exc: botocore.exceptions.ClientError, operation: str,
                zone: str | None) -> ProviderError:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "?")), str(error.get("Message", ""))
        where = _Where(provider=self.provider, zone=zone, endpoint=operation)
        if code in _DENIED:
            return ProviderAuthError(
                f"access denied: the AWS principal may not call route53:{operation} "
                f"({message}); grant route53:{operation} on the hosted zone in its IAM "
                "policy; nothing changed", **where)
        if code in _CREDENTIALS:
            return ProviderAuthError(f"the AWS credentials were rejected ({code}: "
                                     f"{message})", **where)
        if code in ("NoSuchHostedZone", "HostedZoneNotFound"):
            return ZoneMissing(f"no such hosted zone ({message})", **where)
        if code in _BUSY:
            return ProviderUnreachable(
                f"Route 53 kept answering {code} ({message}) through botocore's retries; "
                "the step is retried on the next run", **where)
        return ProviderError(f"{code}: {message}", **where)
