"""The exceptions multisigner raises, in one tree.

    MultisignerError                 root; ``exit_code`` tells the CLI what to return
    ├── ConfigError                  the config file is wrong (exit 2, nothing touched)
    ├── UsageError                   the command line is wrong (exit 2)
    ├── ProviderError                a provider's API failed or answered something unusable
    │   ├── ProviderUnreachable      connection refused, timeout, 5xx after retries
    │   ├── ProviderAuthError        the API key was rejected (401/403)
    │   └── ZoneMissing              the provider does not have the zone
    ├── ObservationError             a nameserver did not answer usefully
    ├── Refused                      an interlock refused a step (exit 1, nothing changed)
    ├── StateError                   the state database is unusable or the zone is locked
    └── AuditError                   the history chain does not verify

Every message says what failed, where (zone, provider, server, key tag, config key) and
what the operator can do about it.
"""

from __future__ import annotations


class MultisignerError(Exception):
    """Root of every error multisigner reports to its user."""

    exit_code = 1


class ConfigError(MultisignerError):
    """The configuration is invalid; raised before anything is touched."""

    exit_code = 2


class UsageError(MultisignerError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = 2


class ProviderError(MultisignerError):
    """A provider API call failed. Carries the provider, zone and endpoint involved."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        zone: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        where = f"provider {provider!r}"
        if zone:
            where += f", zone {zone}"
        if endpoint:
            where += f", {endpoint}"
        super().__init__(f"{where}: {message}")
        self.provider = provider
        self.zone = zone
        self.endpoint = endpoint


class ProviderUnreachable(ProviderError):
    """The provider's API could not be reached, timed out, or kept failing with 5xx."""


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials."""


class ZoneMissing(ProviderError):
    """The provider does not host the zone."""


class ObservationError(MultisignerError):
    """A nameserver gave no usable answer."""


class Refused(MultisignerError):
    """A safety interlock refused the step; nothing was changed."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or []

    def __str__(self) -> str:
        text = super().__str__()
        if self.reasons:
            text += "\n" + "\n".join(f"  - {r}" for r in self.reasons)
        return text


class StateError(MultisignerError):
    """The state database cannot be used as asked (locked zone, busy process, bad URL)."""


class AuditError(MultisignerError):
    """The tamper-evident history does not verify."""
