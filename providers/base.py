"""The adapter contract every provider implements.

The engine never asks "is this PowerDNS?"; it asks what a provider *can* do
(``Capability``) and refuses a process that needs a capability a signer lacks.
An adapter is a thin translation layer: it maps the provider's API onto these calls
and maps the API's failures onto ``ProviderError`` subclasses at its one HTTP seam.
All methods are idempotent (read-before-write is the caller's plan; a repeated call
with the same arguments leaves the same state).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import dns.exception
import dns.name
from pydantic import BaseModel

from core.errors import ProviderError
from core.keys import Digest, Key, Role
from core.keyset import SignedKeySet
from core.observation import ApiKey, ApiZoneState


class Capability(enum.Flag):
    NONE = 0
    IMPORT_FOREIGN_DNSKEY = enum.auto()  # Model 2: serve other signers' keys in its DNSKEY set
    PUBLISH_CDS = enum.auto()  # publish CDS/CDNSKEY records the controller chooses
    SIGN_EXTERNAL_DNSKEY_SET = enum.auto()  # Model 1: serve a DNSKEY RRset signed by the owner
    GENERATE_KEYS = enum.auto()  # create/activate/retire its own keys on request
    MANAGE_NS = enum.auto()  # set the apex NS and CSYNC RRsets (signer add/remove)
    WRITE_RRSETS = enum.auto()  # read and replace one RRset at any name in the zone (ACME)


@dataclass(frozen=True)
class ApiRRset:
    """One RRset as a provider's API holds it: absolute lower-case owner name, type, TTL
    and the records in presentation format (TXT quoted, as in a zone file)."""

    name: str
    rdtype: str
    ttl: int
    records: tuple[str, ...]


def name_in_zone(provider: str, zone: str, name: str) -> str:
    """``name`` absolute and lower-cased; ProviderError unless it is the zone's apex or
    below it (an adapter must never write outside the zone it was asked about)."""
    try:
        owner = dns.name.from_text(name)
        apex = dns.name.from_text(zone)
    except dns.exception.DNSException as exc:
        raise ProviderError(f"{name!r} is not a domain name ({exc}); nothing changed",
                            provider=provider, zone=zone) from None
    if not owner.is_subdomain(apex):
        raise ProviderError(f"refusing {name}: it is outside zone {zone}; nothing changed",
                            provider=provider, zone=zone)
    return owner.to_text().lower()


class Provider(ABC):
    """One DNS provider (signer) reached through its management API."""

    capabilities: ClassVar[Capability] = Capability.NONE
    type_name: ClassVar[str] = ""
    # A third-party adapter's settings model: its ``[[providers]]`` table (name, type,
    # nameservers and its own keys) is validated with it and the instance handed to the
    # constructor. Built-in adapters take core's models instead and leave this None.
    config_model: ClassVar[type[BaseModel] | None] = None
    # True for a provider whose own keys are known only from served signatures (it rolls
    # them itself and cannot list them): its pre-published successor, not signing yet,
    # is then told apart from foreign keys by the controller (orchestrator.decide.follow).
    keys_from_signatures: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @abstractmethod
    async def check_access(self) -> None:
        """Prove the API is reachable and the credentials are accepted."""

    @abstractmethod
    async def read_zone(self, zone: str) -> ApiZoneState:
        """The zone's keys and published CDS/CDNSKEY; raise ZoneMissing if not hosted."""

    async def read_keys(self, zone: str) -> ApiZoneState:
        """Only the provider's own keys (the rest of the state left empty); adapters with a
        cheaper call than ``read_zone`` override this."""
        return await self.read_zone(zone)

    async def set_foreign_dnskeys(self, zone: str, keys: Sequence[Key], ttl: int) -> None:
        """Make ``keys`` the complete set of foreign keys served beside the provider's own."""
        raise NotImplementedError(f"{self.type_name} cannot import foreign DNSKEYs")

    async def set_cds(
        self, zone: str, cds: Sequence[Digest], cdnskey: Sequence[Key], ttl: int
    ) -> None:
        """Make these the complete CDS and CDNSKEY RRsets (empty = none published)."""
        raise NotImplementedError(f"{self.type_name} cannot publish CDS/CDNSKEY")

    async def set_apex_rrset(
        self, zone: str, rrtype: str, contents: Sequence[str], ttl: int
    ) -> None:
        """Make ``contents`` the complete apex RRset of ``rrtype`` (NS, CSYNC); empty
        removes it."""
        raise NotImplementedError(f"{self.type_name} cannot manage apex NS/CSYNC records")

    async def read_rrset(self, zone: str, name: str, rdtype: str) -> ApiRRset | None:
        """``WRITE_RRSETS``: the RRset of ``rdtype`` at ``name`` (inside ``zone``) as the
        provider holds it now; None if there is none."""
        raise NotImplementedError(f"{self.type_name} cannot read arbitrary RRsets")

    async def set_rrset(
        self, zone: str, name: str, rdtype: str, records: Sequence[str], ttl: int
    ) -> None:
        """``WRITE_RRSETS``: make ``records`` (presentation format) the complete RRset of
        ``rdtype`` at ``name``, a name inside ``zone`` (refused otherwise); empty removes
        it. Idempotent. The caller serializes concurrent writers of one RRset
        (read-modify-write under the zone lease)."""
        raise NotImplementedError(f"{self.type_name} cannot write arbitrary RRsets")

    async def requested_dnskey_ttl(self, zone: str) -> int | None:
        """Model 1: the DNSKEY TTL the provider asks the owner to sign with (Knot: its
        policy's dnskey-ttl, from the key signing request); None if it has no preference."""
        return None

    async def serve_signed_keyset(self, zone: str, keyset: SignedKeySet) -> None:
        """Model 1 (``SIGN_EXTERNAL_DNSKEY_SET``): serve exactly these owner-signed
        DNSKEY/CDS/CDNSKEY RRsets, each block from its time on, signing everything else with
        the provider's own ZSKs. Refuse (changing nothing) a set lacking a ZSK the provider
        signs with during a block."""
        raise NotImplementedError(f"{self.type_name} cannot serve an owner-signed DNSKEY RRset")

    async def create_key(
        self, zone: str, role: Role, algorithm: str, *, active: bool, published: bool
    ) -> ApiKey:
        raise NotImplementedError(f"{self.type_name} cannot generate keys")

    async def set_key_state(
        self, zone: str, key_id: str, *, active: bool, published: bool
    ) -> None:
        raise NotImplementedError(f"{self.type_name} cannot change key states")

    async def delete_key(self, zone: str, key_id: str) -> None:
        raise NotImplementedError(f"{self.type_name} cannot delete keys")

    async def aclose(self) -> None:
        """Release connections."""
