"""Where a rolled key lives, behind one interface: a provider's own-key API, or the zone
owner's KSK store (file, PKCS#11, KMS)."""

from __future__ import annotations

from core.config import ZoneConfig
from core.keys import Role
from core.observation import ApiKey, ZoneView
from providers.base import Provider
from providers.kskstore import KskStore, make_store


class ProviderKeys:
    def __init__(self, provider: Provider, zone: ZoneConfig) -> None:
        self.provider = provider
        self.zone = zone

    async def own_keys(self, view: ZoneView) -> tuple[ApiKey, ...]:
        return view.api[self.provider.name].own_keys

    async def create(self, role: Role, active: bool) -> ApiKey:
        return await self.provider.create_key(self.zone.name, role, self.zone.policy.algorithm,
                                              active=active, published=True)

    async def set_state(self, key_id: str, active: bool) -> None:
        await self.provider.set_key_state(self.zone.name, key_id, active=active,
                                          published=True)

    async def delete(self, key_id: str) -> str | None:
        await self.provider.delete_key(self.zone.name, key_id)
        return None


def open_store(zone: ZoneConfig) -> KskStore:
    if zone.owner_ksk is None:
        raise AssertionError("the config guarantees an owner_ksk table for owner-signed zones")
    return make_store(zone.owner_ksk)


class OwnerStoreKeys:
    """The owner's KSKs. Every stored key counts as published and signing: whether it is in
    the combined set, and signs it, is the step's target, not a property of the store. A
    withdrawn KSK is kept in the store (the owner archives it), only left out of the set."""

    def __init__(self, zone: ZoneConfig) -> None:
        self.zone = zone

    async def own_keys(self, view: ZoneView) -> tuple[ApiKey, ...]:
        with open_store(self.zone) as store:
            return tuple(ApiKey(s.dnskey, "ksk", True, True, s.key_id)
                         for s in store.list_keys())

    async def create(self, role: Role, active: bool) -> ApiKey:
        with open_store(self.zone) as store:
            made = store.generate()
        return ApiKey(made.dnskey, "ksk", True, True, made.key_id)

    async def set_state(self, key_id: str, active: bool) -> None:
        return None  # signing is decided per step, in the signed set

    async def delete(self, key_id: str) -> str | None:
        return "kept in the owner's key store, left out of the signed set"
