"""Amazon Route 53 Domains: the DS records the registrar has the registry publish for one
registered domain, and the asynchronous operations that change them.

The documented shapes used (botocore's ``route53domains`` 2014-05-15 service model, and the
AWS API reference):

- ``GetDomainDetail(DomainName)`` → ``DnssecKeys``: a list of ``{Id, KeyTag, Algorithm,
  DigestType, Digest}`` (``Flags`` and ``PublicKey`` are deprecated in the response and
  no longer returned), so a registrar's DS is matched to a DNSKEY by its digest.
  ``InvalidInput`` here means the domain is not registered in this AWS account.
- ``AssociateDelegationSignerToDomain(DomainName, SigningAttributes={Flags, Algorithm,
  PublicKey})`` → ``OperationId``. The registrar takes the DNSKEY, not a DS digest, and
  computes the DS itself.
- ``DisassociateDelegationSignerFromDomain(DomainName, Id)`` → ``OperationId``.
- ``UpdateDomainNameservers(DomainName, Nameservers=[{Name, GlueIps}])`` → ``OperationId``
  (the whole set replaced; ``GetDomainDetail`` lists it as ``Nameservers``).
- ``GetOperationDetail(OperationId)`` → ``Status`` (``SUBMITTED``, ``IN_PROGRESS``,
  ``SUCCESSFUL``, ``FAILED``, ``ERROR``), ``Message``, ``Type`` (``ADD_DNSSEC``,
  ``REMOVE_DNSSEC``, ``UPDATE_NAMESERVER``), ``StatusFlag`` (an action the customer must
  take).
- Errors: ``DuplicateRequest`` (an operation for the domain is in progress),
  ``OperationLimitExceeded``, ``DnssecLimitExceeded``, ``TLDRulesViolation``,
  ``UnsupportedTLD``, ``InvalidInput``; and the common ``AccessDeniedException``,
  ``ThrottlingException``.

boto3 and botocore are imported on first use (the engine imports this module for every
command, most of which never talk to a registrar). boto3 is synchronous: every call runs
in a worker thread under a timeout, so the event loop stays free (the zone's lease is
renewed from it). Throttling is retried here with an exponential back-off, on top of
botocore's own retries, and reported after the budget; a denied call names the IAM action
(``route53domains:AssociateDelegationSignerToDomain``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import ParentConfig
from core.errors import ProviderAuthError, ProviderError, ProviderUnreachable, ZoneMissing
from core.keys import Digest, Key

if TYPE_CHECKING:
    import botocore.exceptions

LABEL = "route53domains"  # how errors name this "provider"
CALL_TIMEOUT = 60.0  # one API call, botocore's own retries included
FINISHED = ("SUCCESSFUL", "FAILED", "ERROR")
UNKNOWN = "UNKNOWN"  # not a registrar status: the registrar no longer reports the operation
_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
_CREDENTIALS = ("InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken",
                "ExpiredTokenException", "SignatureDoesNotMatch",
                "InvalidSignatureException")
_THROTTLED = ("ThrottlingException", "Throttling", "TooManyRequestsException",
              "RequestLimitExceeded", "OperationLimitExceeded", "ServiceUnavailable",
              "InternalFailure")


class _UnknownOperation(ProviderError):
    """GetOperationDetail answered InvalidInput for an operation id."""


class OperationInProgress(ProviderError):
    """The registrar refuses a new DS operation while another for the domain runs
    (``DuplicateRequest``): wait for it and look again."""


def make_client(config: ParentConfig) -> Any:
    """A ``route53domains`` client from the usual credential chain (or ``profile``)."""
    import boto3  # here, not at the top: every engine command imports this module
    import botocore.config

    session = boto3.session.Session(profile_name=config.profile)
    return session.client("route53domains", region_name=config.region,
                          config=botocore.config.Config(
                              retries={"mode": "standard", "max_attempts": 3},
                              connect_timeout=10, read_timeout=20))


@dataclass(frozen=True)
class RegistrarDs:
    """One DS the registrar holds: ``digest`` from its KeyTag/Algorithm/DigestType/Digest,
    ``key`` when an (older) response still carries Flags/PublicKey."""

    id: str
    digest: Digest | None
    key: Key | None

    def names(self, key: Key, zone: str) -> bool:
        if self.digest is not None:
            return self.digest.matches(key, zone)
        return self.key is not None and self.key == key

    @property
    def identified(self) -> bool:
        return self.digest is not None or self.key is not None

    def describe(self) -> str:
        if self.digest is not None:
            return f"DS {self.digest.text}"
        if self.key is not None:
            return f"DNSKEY {self.key.short()}"
        return "an unreadable DS"


@dataclass(frozen=True)
class Operation:
    id: str
    status: str
    message: str
    flag: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESSFUL"

    def describe(self) -> str:
        extra = f" ({self.message})" if self.message else ""
        flag = f"; the registrar waits for the customer: {self.flag}" if self.flag else ""
        return f"operation {self.id} {self.status}{extra}{flag}"


def _parse_ds(entry: dict[str, Any]) -> RegistrarDs:
    digest = key = None
    parts = [entry.get(k) for k in ("KeyTag", "Algorithm", "DigestType", "Digest")]
    if all(p is not None for p in parts):
        try:
            digest = Digest.parse(" ".join(str(p) for p in parts))
        except ValueError:
            digest = None
    if entry.get("PublicKey") and entry.get("Flags") is not None and \
            entry.get("Algorithm") is not None:
        try:
            key = Key.parse(f"{entry['Flags']} 3 {entry['Algorithm']} {entry['PublicKey']}")
        except ValueError:
            key = None
    return RegistrarDs(str(entry.get("Id", "")), digest, key)


def signing_attributes(key: Key) -> dict[str, Any]:
    """What AssociateDelegationSignerToDomain takes: the DNSKEY's flags, algorithm and
    base64 public key (the registrar computes the DS)."""
    return {"Flags": key.flags, "Algorithm": key.algorithm,
            "PublicKey": base64.b64encode(key.rdata.key).decode()}


class Route53Domains:
    """One registered domain at Route 53 Domains. ``sleep`` and the back-off are
    parameters so that tests need not wait."""

    def __init__(self, client: Any, domain: str, *, zone: str | None = None,
                 throttle_attempts: int = 6, backoff: float = 1.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.client = client
        self.domain = domain
        self.zone = zone
        self.throttle_attempts = throttle_attempts
        self.backoff = backoff
        self.sleep = sleep

    async def ds_records(self) -> list[RegistrarDs]:
        detail = await self.call("GetDomainDetail", DomainName=self.domain)
        return [_parse_ds(entry) for entry in detail.get("DnssecKeys") or []]

    async def nameservers(self) -> dict[str, list[str]]:
        """The domain's name servers at the registrar (absolute, lower case) and the glue
        addresses of each (``Nameservers``: ``{Name, GlueIps}``)."""
        detail = await self.call("GetDomainDetail", DomainName=self.domain)
        return {str(n["Name"]).lower().rstrip(".") + ".": list(n.get("GlueIps") or [])
                for n in detail.get("Nameservers") or []}

    async def set_nameservers(self, servers: dict[str, list[str]]) -> str:
        """Replace the domain's name servers (``UpdateDomainNameservers``); glue only for
        the names that have addresses."""
        listed = [{"Name": name.rstrip("."), **({"GlueIps": glue} if glue else {})}
                  for name, glue in sorted(servers.items())]
        answer = await self.call("UpdateDomainNameservers", DomainName=self.domain,
                                 Nameservers=listed)
        return str(answer["OperationId"])

    async def associate(self, key: Key) -> str:
        answer = await self.call("AssociateDelegationSignerToDomain", DomainName=self.domain,
                                 SigningAttributes=signing_attributes(key))
        return str(answer["OperationId"])

    async def disassociate(self, ds_id: str) -> str:
        answer = await self.call("DisassociateDelegationSignerFromDomain",
                                 DomainName=self.domain, Id=ds_id)
        return str(answer["OperationId"])

    async def operation(self, operation_id: str) -> Operation:
        """The operation's state; ``UNKNOWN`` when the registrar no longer reports it
        (``InvalidInput``: documented for an operation that has completed)."""
        try:
            answer = await self.call("GetOperationDetail", OperationId=operation_id)
        except _UnknownOperation as exc:
            return Operation(operation_id, UNKNOWN, str(exc))
        return Operation(operation_id, str(answer.get("Status", "?")),
                         str(answer.get("Message") or ""), answer.get("StatusFlag"))

    async def wait(self, operation_id: str, budget: float) -> Operation:
        """Poll the operation (1 s, 2 s, 4 s ... at most 15 s apart) until it finishes or
        *budget* seconds of waiting are spent; the last state seen."""
        waited, delay = 0.0, 1.0
        while True:
            found = await self.operation(operation_id)
            if found.finished or found.status == UNKNOWN or waited >= budget:
                return found
            pause = min(delay, 15.0, budget - waited)
            await self.sleep(pause)
            waited += pause
            delay *= 2

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One API call off the event loop; throttling is retried with back-off."""
        import botocore.exceptions
        from botocore import xform_name

        method = getattr(self.client, xform_name(operation))
        for attempt in range(self.throttle_attempts):
            try:
                result: dict[str, Any] = await asyncio.wait_for(
                    asyncio.to_thread(method, **params), CALL_TIMEOUT)
                return result
            except botocore.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", "?"))
                if code not in _THROTTLED or attempt + 1 == self.throttle_attempts:
                    raise self._mapped(exc, operation) from None
                await self.sleep(self.backoff * 2 ** attempt)
            except TimeoutError:
                raise ProviderUnreachable(
                    f"Route 53 Domains did not answer {operation} within {CALL_TIMEOUT:g}s",
                    provider=LABEL, zone=self.zone, endpoint=operation) from None
            except botocore.exceptions.NoCredentialsError:
                raise ProviderAuthError(
                    "no AWS credentials found; set AWS_PROFILE (or [zones.parent] profile) "
                    "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an "
                    "instance/task role", provider=LABEL, zone=self.zone,
                    endpoint=operation) from None
            except botocore.exceptions.BotoCoreError as exc:
                raise ProviderUnreachable(f"Route 53 Domains {operation} failed: {exc}",
                                          provider=LABEL, zone=self.zone,
                                          endpoint=operation) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _mapped(self, exc: botocore.exceptions.ClientError, operation: str) -> ProviderError:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "?")), str(error.get("Message", ""))
        where: dict[str, Any] = {"provider": LABEL, "zone": self.zone, "endpoint": operation}
        if code in _DENIED:
            return ProviderAuthError(
                f"access denied: the AWS principal may not call route53domains:{operation} "
                f"({message}); grant route53domains:{operation} in its IAM policy; nothing "
                "changed", **where)
        if code in _CREDENTIALS:
            return ProviderAuthError(f"the AWS credentials were rejected ({code}: {message})",
                                     **where)
        if code in _THROTTLED:
            return ProviderUnreachable(
                f"Route 53 Domains kept answering {code} ({message}) through "
                f"{self.throttle_attempts} attempts with back-off; retried on the next "
                "look at the parent", **where)
        if code == "DuplicateRequest":
            return OperationInProgress(
                f"an earlier operation on {self.domain} is still in progress at the "
                f"registrar ({message}); waiting for it", **where)
        if code == "InvalidInput" and operation == "GetOperationDetail":
            return _UnknownOperation(f"the registrar no longer reports the operation "
                                     f"({message})", **where)
        if code == "InvalidInput" and operation == "GetDomainDetail":
            return ZoneMissing(
                f"domain {self.domain} is not registered with Route 53 Domains in this AWS "
                f"account ({message}); check [zones.parent] domain and the account the "
                "credentials belong to", **where)
        if code in ("UnsupportedTLD", "TLDRulesViolation"):
            return ProviderError(f"the registry of {self.domain} does not allow this "
                                 f"through Route 53 Domains ({code}: {message})", **where)
        if code == "DnssecLimitExceeded":
            return ProviderError(
                f"the registry holds as many DS records for {self.domain} as it allows "
                f"({message}); remove a stale one at the registrar first", **where)
        return ProviderError(f"{code}: {message}", **where)
