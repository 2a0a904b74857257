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
from typing import ClassVar

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


class Provider(ABC):
    """One DNS provider (signer) reached through its management API."""

    capabilities: ClassVar[Capability] = Capability.NONE
    type_name: ClassVar[str] = ""

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
