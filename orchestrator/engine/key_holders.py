"""Where a rolled key lives, behind one interface: a provider's own-key API, or the zone
owner's KSK store (file, PKCS#11, KMS).

Key stores are synchronous (boto3 retries for minutes, a PKCS#11 token may never answer),
so their calls run in a worker thread under a timeout (``off_loop``): the event loop stays
free to renew the zone's lease and to notice when it is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from core.config import ZoneConfig
from core.errors import Refused
from core.keys import Role
from core.observation import ApiKey, ZoneView
from providers.base import Provider
from providers.kskstore import KskStore, StoredKey, make_store

T = TypeVar("T")
# Bounds one key-store call: KMS with five attempts of 10 s connect + 30 s read stays
# within it; a KSK generation on a slow HSM takes seconds.
KEY_STORE_TIMEOUT = 240.0


async def off_loop(what: str, call: Callable[[], T], timeout: float = KEY_STORE_TIMEOUT) -> T:
    """*call* in a worker thread; Refused if it takes longer than *timeout*. The thread
    cannot be stopped: a late answer is dropped (a key generated after the timeout is
    adopted by the next attempt, which lists the store first)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(call), timeout)
    except TimeoutError:
        raise Refused(f"{what}: the owner's key store did not answer within {timeout:g}s; "
                      "nothing was recorded as done; check the store (HSM, KMS) and retry") \
            from None


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
        def listed() -> list[StoredKey]:
            with open_store(self.zone) as store:
                return store.list_keys()

        stored = await off_loop(f"{self.zone.name}: listing the owner's KSKs", listed)
        return tuple(ApiKey(s.dnskey, "ksk", True, True, s.key_id) for s in stored)

    async def create(self, role: Role, active: bool) -> ApiKey:
        def generated() -> StoredKey:
            with open_store(self.zone) as store:
                return store.generate()

        made = await off_loop(f"{self.zone.name}: generating an owner KSK", generated)
        return ApiKey(made.dnskey, "ksk", True, True, made.key_id)

    async def set_state(self, key_id: str, active: bool) -> None:
        return None  # signing is decided per step, in the signed set

    async def delete(self, key_id: str) -> str | None:
        return "kept in the owner's key store, left out of the signed set"
