"""The Cloudflare adapter against the fake in ``fake_cloudflare.py`` (built from
Cloudflare's documented request/response shapes, not from the live service): the
multi-signer setting, the reported dropping of foreign KSKs, pagination, 429 with
Retry-After, 5xx storms against the retry budget, a token without DNS Write, a repeated
create, and stale reads after a write."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from fake_cloudflare import GOOD, READONLY, FakeCloudflare
from fakeapi import ZONE, FakeClock
from pydantic import SecretStr
from unit.signing import make_key

from core.config import CloudflareProviderConfig
from core.errors import ProviderAuthError, ProviderError, ProviderUnreachable, ZoneMissing
from providers.cloudflare.adapter import CloudflareProvider
from providers.cloudflare.api import dnskey_body

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def adapter(fake: FakeCloudflare, clock: FakeClock, token: str = GOOD, **settings: Any
            ) -> CloudflareProvider:
    config = CloudflareProviderConfig(name="c0", api_url="https://cf.example/client/v4",
                                      token=SecretStr(token), nameservers=["192.0.2.53"],
                                      **settings)
    return CloudflareProvider(config, transport=fake.transport(), serve=fake.serve,
                              clock=clock, sleep=clock.sleep)


def test_own_keys_are_the_dnssec_endpoint_ksk_and_the_served_zsk() -> None:
    fake, clock = FakeCloudflare(), FakeClock()
    state = run(adapter(fake, clock).read_zone(ZONE))
    assert {(k.key, k.role) for k in state.own_keys} == {(fake.ksk.key, "ksk"),
                                                         (fake.zsk.key, "zsk")}


def test_a_successor_cloudflare_prepublished_is_its_own_published_not_active() -> None:
    """Follow mode: a served key that signs nothing and is not among the DNSKEY records
    the controller wrote is Cloudflare's own successor (published, not active)."""
    fake, clock = FakeCloudflare(), FakeClock()
    successor = make_key(ksk=False).key
    fake.prepublished.add(successor)
    state = run(adapter(fake, clock).read_zone(ZONE))
    (succ,) = [k for k in state.own_keys if k.key == successor]
    assert succ.published and not succ.active
    assert successor not in state.foreign_dnskeys


def test_foreign_dnskeys_need_multi_signer_on_and_nothing_is_written_without() -> None:
    fake, clock = FakeCloudflare(), FakeClock()
    fake.multi_signer = False
    with pytest.raises(ProviderError) as err:
        run(adapter(fake, clock).set_foreign_dnskeys(ZONE, [make_key(ksk=False).key], 3600))
    assert "dnssec_multi_signer" in str(err.value) and "nothing changed" in str(err.value)
    assert fake.records == []


def test_a_foreign_ksk_left_out_of_the_served_set_is_refused_with_the_remedy() -> None:
    fake, clock = FakeCloudflare(), FakeClock()
    zsk, ksk = make_key(ksk=False).key, make_key(ksk=True).key
    with pytest.raises(ProviderError) as err:
        run(adapter(fake, clock).set_foreign_dnskeys(ZONE, [zsk, ksk], 3600))
    text = str(err.value)
    assert f"KSK(s) ({ksk.short()})" in text and "import_ksks = false" in text
    fake.drop_foreign_ksks = False  # a Cloudflare that does serve them: accepted
    run(adapter(fake, clock).set_foreign_dnskeys(ZONE, [zsk, ksk], 3600))
    assert fake.foreign() == {zsk, ksk}


def test_every_page_of_records_is_read() -> None:
    fake, clock = FakeCloudflare(page_size=2), FakeClock()
    keys = [make_key(ksk=False).key for _ in range(5)]
    p = adapter(fake, clock)
    run(p.set_foreign_dnskeys(ZONE, keys, 3600))
    assert run(p.read_zone(ZONE)).foreign_dnskeys == set(keys)
    assert any(r.url.params.get("page") == "3" for r in fake.requests)


def test_a_429_is_waited_out_and_a_storm_gives_up_after_the_budget() -> None:
    fake, clock = FakeCloudflare(), FakeClock()
    fake.throttles = ["12"]
    run(adapter(fake, clock).check_access())
    assert clock.slept == [12.0]
    fake.always_fail = 502
    with pytest.raises(ProviderUnreachable, match=r"retry_budget 20s\); last failure: HTTP "
                                                  r"502"):
        run(adapter(fake, clock, retry_budget="20s").read_zone(ZONE))


def test_a_token_without_dns_write_names_the_permission_and_changes_nothing() -> None:
    fake, clock = FakeCloudflare(), FakeClock()
    with pytest.raises(ProviderAuthError) as err:
        run(adapter(fake, clock, token=READONLY).set_foreign_dnskeys(
            ZONE, [make_key(ksk=False).key], 3600))
    assert "HTTP 403: 10000: Authentication error" in str(err.value)
    assert "Zone → DNS → Edit (DNS Write)" in str(err.value)
    assert fake.records == []


def test_a_rejected_token_is_an_auth_error() -> None:
    with pytest.raises(ProviderAuthError, match="Invalid API Token"):
        run(adapter(FakeCloudflare(), FakeClock(), token="nope").check_access())


def test_a_repeated_create_of_an_existing_record_counts_as_done() -> None:
    """A create retried after a lost answer meets Cloudflare's 81058 "identical record"."""
    fake, clock = FakeCloudflare(), FakeClock()
    key = make_key(ksk=False).key
    p = adapter(fake, clock)
    body = dnskey_body(ZONE, key, 3600)
    run(p._cf.create(ZONE, body))
    run(p._cf.create(ZONE, body))
    assert fake.foreign() == {key} and len(fake.records) == 1


def test_an_accepted_write_is_read_back_through_stale_reads() -> None:
    fake, clock = FakeCloudflare(), FakeClock()
    fake.lag = 3
    key = make_key(ksk=False).key
    p = adapter(fake, clock)
    run(p.set_foreign_dnskeys(ZONE, [key], 3600))
    assert run(p.read_zone(ZONE)).foreign_dnskeys == {key}
    fake.lag = 10_000
    with pytest.raises(ProviderError, match="still answers the old data after 4s"):
        run(adapter(fake, clock, consistency_window="4s").set_foreign_dnskeys(ZONE, [], 3600))


def test_a_zone_the_token_cannot_see_is_zone_missing() -> None:
    with pytest.raises(ZoneMissing, match="no Cloudflare zone of this name"):
        run(adapter(FakeCloudflare(), FakeClock()).read_zone("other.test."))
