"""The contract every provider adapter must pass, whatever is behind it (a real server in
the lab, or a fake of a cloud API built from its documentation).

An adapter's test file builds ``Target``s (``test_contract.py`` does it for the built-in
adapters) and runs every check below against each; docs/providers/writing-an-adapter.md
shows how a third-party adapter reuses this module. Where the adapter does not declare the
capability a check exercises, the check asserts that the adapter refuses it; declaring a
capability commits the adapter to every check of it.

Checks read back through the adapter's own ``read_zone`` and, where the target can say
what the provider's nameservers serve (``served``), through DNS too: a provider that
accepts a write but does not serve it fails here, not in production.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from core.errors import ProviderAuthError, ProviderError, ZoneMissing
from core.keys import Key
from providers.base import Capability, Provider
from providers.registry import adapter_class

# Which methods a capability obliges an adapter to implement (and which it must leave to
# the base class, raising NotImplementedError, when it does not declare it).
METHODS: dict[Capability, tuple[str, ...]] = {
    Capability.IMPORT_FOREIGN_DNSKEY: ("set_foreign_dnskeys",),
    Capability.PUBLISH_CDS: ("set_cds",),
    Capability.MANAGE_NS: ("set_apex_rrset",),
    Capability.WRITE_RRSETS: ("read_rrset", "set_rrset"),
    Capability.GENERATE_KEYS: ("create_key", "set_key_state", "delete_key"),
    Capability.SIGN_EXTERNAL_DNSKEY_SET: ("serve_signed_keyset",),
}
SETTLE_SECONDS = 20.0  # how long a served change may take to reach the nameservers


@dataclass
class Target:
    provider: Provider
    zone: str  # hosted and signed by the provider with at least one own key
    foreign: list[Key]  # keys to import: ZSKs, and KSKs only if the provider serves them
    served: Callable[[str], Awaitable[set[Key]]] | None = None  # DNSKEYs its servers serve
    denied: Provider | None = None  # the same provider with a rejected credential
    missing_zone: str = "absent-zone.test."
    ns: tuple[str, ...] = ("ns1.contract.example.", "ns2.contract.example.")


async def declares(target: Target, capability: Capability,
                   call: Callable[[Provider], Awaitable[object]]) -> bool:
    """Whether the adapter declares ``capability``. If it does not, the check's first call
    must be refused with NotImplementedError naming the adapter (not attempted, not a
    silent no-op), and the check ends there: its other assertions are for adapters that
    declare it."""
    p = target.provider
    if p.can(capability):
        return True
    with pytest.raises(NotImplementedError, match=p.type_name):
        await call(p)
    return False


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     seconds: float = SETTLE_SECONDS) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds:g}s: {what}")
        await asyncio.sleep(0.2)


# -- declaration -------------------------------------------------------------------------

def declaration(target: Target) -> None:
    """The registry maps the adapter's type to its class; every declared capability is
    implemented and no undeclared one is."""
    cls = type(target.provider)
    assert target.provider.type_name, "type_name is empty"
    assert adapter_class(target.provider.type_name) is cls
    for capability, methods in METHODS.items():
        for method in methods:
            mine = inspect.getattr_static(cls, method)
            overridden = mine is not inspect.getattr_static(Provider, method)
            assert overridden == target.provider.can(capability), (
                f"{cls.__name__}.{method}: {'implemented' if overridden else 'missing'} but "
                f"{capability.name} is {'not ' if overridden else ''}declared")


# -- access and reading ------------------------------------------------------------------

async def access(target: Target) -> None:
    await target.provider.check_access()
    if target.denied is not None:
        with pytest.raises(ProviderAuthError):
            await target.denied.check_access()


async def missing_zone(target: Target) -> None:
    with pytest.raises(ZoneMissing):
        await target.provider.read_zone(target.missing_zone)


async def own_keys(target: Target) -> None:
    state = await target.provider.read_zone(target.zone)
    assert state.provider == target.provider.name
    own = [k.key for k in state.own_keys]
    assert own, "a signer must report at least one key of its own"
    assert len({k.key_id for k in state.own_keys}) == len(own), "key ids must be unique"
    assert not set(own) & state.foreign_dnskeys, "a key is either own or foreign"
    keys_only = await target.provider.read_keys(target.zone)
    assert {k.key for k in keys_only.own_keys} == set(own)
    if target.served is not None:
        assert {k.key for k in state.own_keys if k.published} <= await target.served(
            target.zone), "an own key reported as published is not served"


# -- writes ------------------------------------------------------------------------------

async def imports_foreign_keys(target: Target) -> None:
    if not await declares(target, Capability.IMPORT_FOREIGN_DNSKEY,
                          lambda p: p.set_foreign_dnskeys(target.zone, [], 3600)):
        return
    p, zone, keys = target.provider, target.zone, set(target.foreign)
    before = {k.key for k in (await p.read_zone(zone)).own_keys}
    for _ in range(2):  # the second call must be a no-op
        await p.set_foreign_dnskeys(zone, sorted(keys), 3600)
        state = await p.read_zone(zone)
        assert state.foreign_dnskeys == keys
        assert {k.key for k in state.own_keys} == before, "importing changed the own keys"
    if target.served is not None:
        served = target.served

        async def serving() -> bool:
            return keys <= await served(zone)

        await eventually(serving, "the imported keys are served")
    await p.set_foreign_dnskeys(zone, [], 3600)
    assert (await p.read_zone(zone)).foreign_dnskeys == frozenset()
    if target.served is not None:
        served = target.served

        async def withdrawn() -> bool:
            return not keys & await served(zone)

        await eventually(withdrawn, "the withdrawn keys are no longer served")


async def publishes_cds(target: Target) -> None:
    if not await declares(target, Capability.PUBLISH_CDS,
                          lambda p: p.set_cds(target.zone, [], [], 3600)):
        return
    p, zone = target.provider, target.zone
    ksks = sorted({k.key for k in (await p.read_zone(zone)).own_keys if k.key.sep}
                  | {k for k in target.foreign if k.sep})
    cds = [k.ds(zone) for k in ksks]
    await p.set_cds(zone, cds, ksks, 3600)
    state = await p.read_zone(zone)
    assert (state.cds, state.cdnskey) == (frozenset(cds), frozenset(ksks))
    await p.set_cds(zone, [], [], 3600)
    state = await p.read_zone(zone)
    # A signer may go on publishing CDS/CDNSKEY for its own KSK by itself (Knot's
    # cds-cdnskey-publish, deSEC): what remains must be its own, never a foreign key's.
    own_ksks = {k.key for k in state.own_keys if k.key.sep}
    assert state.cdnskey <= own_ksks, f"left behind: {state.cdnskey - own_ksks}"
    assert state.cds <= {k.ds(zone) for k in own_ksks}, f"left behind: {state.cds}"


async def manages_ns(target: Target) -> None:
    if not await declares(target, Capability.MANAGE_NS,
                          lambda p: p.set_apex_rrset(target.zone, "NS", list(target.ns), 3600)):
        return
    p, zone = target.provider, target.zone
    original = sorted((await p.read_zone(zone)).ns)
    wanted = sorted({*original, *target.ns})
    await p.set_apex_rrset(zone, "NS", wanted, 3600)
    assert (await p.read_zone(zone)).ns == frozenset(wanted)
    await p.set_apex_rrset(zone, "NS", original, 3600)
    assert (await p.read_zone(zone)).ns == frozenset(original)


async def writes_rrsets(target: Target) -> None:
    if not await declares(target, Capability.WRITE_RRSETS,
                          lambda p: p.read_rrset(target.zone, target.zone, "TXT")):
        return
    p, zone = target.provider, target.zone
    name = f"_acme-challenge.{zone}"
    records = ['"contract-token-1"', '"contract-token-2"']
    await p.set_rrset(zone, name, "TXT", records, 3600)
    got = await p.read_rrset(zone, name, "TXT")
    assert got is not None and got.name == name and got.rdtype == "TXT"
    assert sorted(got.records) == records
    await p.set_rrset(zone, name, "TXT", [], 3600)
    assert await p.read_rrset(zone, name, "TXT") is None
    with pytest.raises(ProviderError, match="outside zone"):
        await p.set_rrset(zone, "_acme-challenge.elsewhere.example.", "TXT", records, 3600)


async def generates_keys(target: Target) -> None:
    if not await declares(target, Capability.GENERATE_KEYS, lambda p: p.create_key(
            target.zone, "zsk", "ECDSAP256SHA256", active=False, published=True)):
        return
    p, zone = target.provider, target.zone
    created = await p.create_key(zone, "zsk", "ECDSAP256SHA256", active=False,
                                 published=True)
    try:
        own = {k.key_id: k for k in (await p.read_zone(zone)).own_keys}
        assert created.key_id in own and not own[created.key_id].active
        await p.set_key_state(zone, created.key_id, active=True, published=True)
        own = {k.key_id: k for k in (await p.read_zone(zone)).own_keys}
        assert own[created.key_id].active
    finally:
        await p.delete_key(zone, created.key_id)
    assert created.key_id not in {k.key_id for k in (await p.read_zone(zone)).own_keys}


CHECKS = [access, missing_zone, own_keys, imports_foreign_keys, publishes_cds, manages_ns,
          writes_rrsets, generates_keys]
