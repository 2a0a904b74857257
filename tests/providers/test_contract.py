"""Every built-in Model 2 adapter against the shared contract (``contract.py``):

* ``powerdns``: a real PowerDNS 4.7 of the lab (``lab`` marker);
* ``rfc2136``: a real Knot DNS 3.2 signing with its own keys, written by TSIG UPDATE;
* ``desec`` and ``cloudflare``: fakes of their APIs built from the providers'
  documented request/response shapes (``fake_desec.py``, ``fake_cloudflare.py``: see their
  docstrings), their nameservers simulated with real dnspython signatures;
* ``ns1``: a fake of its API (``fake_ns1.py``), like deSEC's and Cloudflare's;
* ``route53``: moto plus the documented GetDNSSEC answer (``fake_route53.py``).

(The Knot offline-KSK adapter serves an owner-signed key set, Model 1; its contract is
``serve_signed_keyset`` and is tested in tests/knot.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import contract
import dns.name
import pytest
from contract import Target
from fake_cloudflare import FakeCloudflare
from fake_desec import FakeDesec
from fake_ns1 import FakeNs1
from fake_route53 import route53, served
from fakeapi import ZONE
from prereq import needs
from pydantic import SecretStr
from rollover.rollkit import NEEDS_SERVERS, running_lab
from unit.signing import make_key

from core.config import (
    CloudflareProviderConfig,
    DesecProviderConfig,
    Ns1ProviderConfig,
    ProviderConfig,
    Rfc2136ProviderConfig,
    Route53ProviderConfig,
)
from core.keys import Key
from multisigner_lab import Lab
from providers.cloudflare.adapter import CloudflareProvider
from providers.desec.adapter import DesecProvider
from providers.nameservers import observe_server
from providers.ns1.adapter import Ns1Provider
from providers.powerdns import PowerDNSProvider
from providers.rfc2136.adapter import Rfc2136Provider
from providers.route53.adapter import Route53Provider
from providers.served_keys import served_dnskeys

MakeTarget = Callable[[], AbstractAsyncContextManager[Target]]
LAB_ZONE = "contract.test."


def foreign(*, ksk: bool) -> list[Key]:
    keys = [make_key(ksk=False).key]
    return [*keys, make_key(ksk=True).key] if ksk else keys


def desec_config(token: str) -> DesecProviderConfig:
    return DesecProviderConfig(name="d0", api_url="https://desec.example/api/v1",
                               token=SecretStr(token), nameservers=["192.0.2.53"],
                               consistency_window="10s")


def cloudflare_config(token: str) -> CloudflareProviderConfig:
    return CloudflareProviderConfig(name="c0", api_url="https://cf.example/client/v4",
                                    token=SecretStr(token), nameservers=["192.0.2.53"],
                                    consistency_window="10s")


@asynccontextmanager
async def desec_target() -> AsyncIterator[Target]:
    fake = FakeDesec(page_size=2)  # small pages: every zone read paginates
    fake.lag = 2  # every write is read back stale twice before the new data shows

    def make(token: str) -> DesecProvider:
        return DesecProvider(desec_config(token), transport=fake.transport(), serve=fake.serve)

    provider, denied = make("tok-good"), make("wrong-token")

    async def served(zone: str) -> set[Key]:
        return served_dnskeys(await fake.serve(zone))

    try:
        yield Target(provider, ZONE, foreign(ksk=True), served, denied)
    finally:
        await provider.aclose()
        await denied.aclose()


@asynccontextmanager
async def cloudflare_target() -> AsyncIterator[Target]:
    fake = FakeCloudflare(page_size=1)
    fake.lag = 2

    def make(token: str) -> CloudflareProvider:
        return CloudflareProvider(cloudflare_config(token), transport=fake.transport(),
                                  serve=fake.serve)

    provider, denied = make("cf-good"), make("wrong-token")

    async def served(zone: str) -> set[Key]:
        return served_dnskeys(await fake.serve(zone))

    try:  # Cloudflare serves foreign ZSKs only (docs/providers/cloudflare.md)
        yield Target(provider, ZONE, foreign(ksk=False), served, denied)
    finally:
        await provider.aclose()
        await denied.aclose()


@asynccontextmanager
async def ns1_target() -> AsyncIterator[Target]:
    fake = FakeNs1()
    fake.lag = 2

    def make(token: str) -> Ns1Provider:
        return Ns1Provider(Ns1ProviderConfig(name="n0", api_url="https://ns1.example/v1",
                                             token=SecretStr(token), nameservers=["192.0.2.53"],
                                             consistency_window="10s"),
                           transport=fake.transport())

    provider, denied = make("ns1-good"), make("wrong-key")

    async def served(zone: str) -> set[Key]:
        return served_dnskeys(await fake.serve(zone))

    try:
        yield Target(provider, ZONE, foreign(ksk=True), served, denied)
    finally:
        await provider.aclose()
        await denied.aclose()


@asynccontextmanager
async def route53_target() -> AsyncIterator[Target]:
    with route53() as (client, ksk, zsk):
        serve = served(ksk, zsk)
        provider = Route53Provider(Route53ProviderConfig(name="r0", nameservers=["192.0.2.53"]),
                                   client=client, serve=serve)

        async def dnskeys(zone: str) -> set[Key]:
            return served_dnskeys(await serve(zone))

        yield Target(provider, ZONE, [], dnskeys)  # it imports no key


def dns_served(server: str) -> Callable[[str], Awaitable[set[Key]]]:
    async def served(zone: str) -> set[Key]:
        view = await observe_server(dns.name.from_text(zone), "x", server)
        return served_dnskeys(view)

    return served


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "contract", providers=1, zones=[LAB_ZONE],
                     scanner=False, unbound=False) as running:
        yield running


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from rfc2136.knot2 import KnotSigner

    signer = KnotSigner.make("u0", tmp_path_factory.mktemp("contract-knot"), [LAB_ZONE],
                             ["ns1.u0.test."], 2, dnskey_management="incremental")
    try:
        signer.start()
        signer.wait_signed(LAB_ZONE)
        yield signer
    finally:
        signer.stop()


def powerdns_target(lab: Lab) -> MakeTarget:
    p0 = lab.server("p0")
    server = f"{p0.address}:{p0.dns_port}"

    def config(key: str) -> ProviderConfig:
        return ProviderConfig(name="p0", type="powerdns", api_url=p0.api_url,
                              api_key=SecretStr(key), nameservers=[server])

    @asynccontextmanager
    async def make() -> AsyncIterator[Target]:
        provider = PowerDNSProvider(config(p0.api_key))
        denied = PowerDNSProvider(config("wrong-key"), attempts=1)
        try:
            yield Target(provider, LAB_ZONE, foreign(ksk=True), dns_served(server), denied)
        finally:
            await provider.aclose()
            await denied.aclose()

    return make


def rfc2136_target(knot: object) -> MakeTarget:
    server: str = knot.nameserver  # type: ignore[attr-defined]
    secret: str = knot.secret  # type: ignore[attr-defined]

    @asynccontextmanager
    async def make() -> AsyncIterator[Target]:
        from rfc2136.knot2 import TSIG_NAME

        provider = Rfc2136Provider(Rfc2136ProviderConfig(
            name="u0", server=server, tsig_name=TSIG_NAME, tsig_secret=secret,
            nameservers=[server]))
        try:  # no credential at check_access (TSIG is proven by the first UPDATE)
            yield Target(provider, LAB_ZONE, foreign(ksk=True), dns_served(server))
        finally:
            await provider.aclose()

    return make


KNOT = needs("knotd", "knotc", "keymgr", what="Knot DNS 3.2, Debian package knot")


@pytest.fixture(params=[
    "desec", "cloudflare", "ns1", "route53",
    pytest.param("powerdns", marks=[pytest.mark.lab, NEEDS_SERVERS]),
    pytest.param("rfc2136", marks=[pytest.mark.lab, KNOT]),
])
def make_target(request: pytest.FixtureRequest) -> MakeTarget:
    if request.param == "desec":
        return desec_target
    if request.param == "cloudflare":
        return cloudflare_target
    if request.param == "route53":
        return route53_target
    if request.param == "ns1":
        return ns1_target
    if request.param == "powerdns":
        return powerdns_target(request.getfixturevalue("lab"))
    return rfc2136_target(request.getfixturevalue("knot"))


@pytest.mark.parametrize("check", contract.CHECKS, ids=lambda c: c.__name__)
def test_contract(make_target: MakeTarget,
                  check: Callable[[Target], Awaitable[None]]) -> None:
    async def main() -> None:
        async with make_target() as target:
            await check(target)

    asyncio.run(main())


def test_declaration(make_target: MakeTarget) -> None:
    async def main() -> None:
        async with make_target() as target:
            contract.declaration(target)

    asyncio.run(main())

