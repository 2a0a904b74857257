"""The deSEC adapter's behaviour under the faults its documentation describes, against
the fake in ``fake_desec.py`` (built from deSEC's documented request/response shapes,
not from the live service): pagination, 429 with Retry-After, 5xx storms against the
retry budget, tokens without a permission, stale reads after a write, minimum TTL, and
own keys read by DNS."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from fake_desec import GOOD, READONLY, FakeDesec
from fakeapi import ZONE, FakeClock
from pydantic import SecretStr
from unit.signing import make_key

from core.config import DesecProviderConfig
from core.errors import ProviderAuthError, ProviderError, ProviderUnreachable, ZoneMissing
from providers.desec.adapter import DesecProvider

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def adapter(fake: FakeDesec, clock: FakeClock, token: str = GOOD, **settings: Any
            ) -> DesecProvider:
    config = DesecProviderConfig(name="d0", api_url="https://desec.example/api/v1",
                                 token=SecretStr(token), nameservers=["192.0.2.53"],
                                 **settings)
    return DesecProvider(config, transport=fake.transport(), serve=fake.serve, clock=clock,
                         sleep=clock.sleep)


def test_every_page_of_rrsets_is_read() -> None:
    fake, clock = FakeDesec(page_size=2), FakeClock()
    for i in range(5):
        fake.rrsets[(f"h{i}", "A")] = {"ttl": 3600 + i * 100, "records": ["192.0.2.1"]}
    state = run(adapter(fake, clock).read_zone(ZONE))
    assert state.max_ttl == 3600 + 4 * 100  # on the last of three pages
    assert fake.count("GET", "/rrsets/") == 3


def test_a_429_is_waited_out_as_retry_after_says() -> None:
    fake, clock = FakeDesec(), FakeClock()
    fake.throttles = ["7", "3"]
    run(adapter(fake, clock).check_access())
    assert clock.slept == [7.0, 3.0]


def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    fake, clock = FakeDesec(), FakeClock()
    fake.throttles = ["3600"]
    with pytest.raises(ProviderUnreachable) as err:
        run(adapter(fake, clock, retry_budget="60s").check_access())
    assert "HTTP 429 (rate limited, Retry-After 3600s)" in str(err.value)
    assert "gave up after 1 attempt(s)" in str(err.value)
    assert clock.slept == []


def test_a_short_5xx_burst_is_retried() -> None:
    fake, clock = FakeDesec(), FakeClock()
    fake.failures = [502, 503, 500]
    assert run(adapter(fake, clock).read_zone(ZONE)).own_keys
    assert clock.slept[:3] == [0.5, 1.0, 2.0]  # exponential back-off


def test_a_5xx_storm_gives_up_after_the_budget_with_a_clear_message() -> None:
    fake, clock = FakeDesec(), FakeClock()
    fake.always_fail = 503
    with pytest.raises(ProviderUnreachable) as err:
        run(adapter(fake, clock, retry_budget="45s").read_zone(ZONE))
    text = str(err.value)
    assert "retry_budget 45s" in text and "last failure: HTTP 503: upstream unavailable" in text
    assert sum(clock.slept) <= 45
    assert len(clock.slept) >= 5  # it did keep trying within the budget


def test_a_rejected_token_is_an_auth_error() -> None:
    fake, clock = FakeDesec(), FakeClock()
    with pytest.raises(ProviderAuthError, match=r"token was rejected \(HTTP 401: Invalid "
                                                r"token.\)"):
        run(adapter(fake, clock, token="nope").check_access())


def test_a_token_without_write_permission_names_the_policy_and_changes_nothing() -> None:
    fake, clock = FakeDesec(), FakeClock()
    before = dict(fake.rrsets)
    with pytest.raises(ProviderAuthError) as err:
        run(adapter(fake, clock, token=READONLY).set_foreign_dnskeys(
            ZONE, [make_key(ksk=False).key], 3600))
    text = str(err.value)
    assert "HTTP 403" in text
    assert "token policy granting perm_write for subname '@', type DNSKEY on example.test." \
        in text
    assert fake.rrsets == before


def test_an_accepted_write_is_read_back_through_stale_reads() -> None:
    fake, clock = FakeDesec(), FakeClock()
    fake.lag = 4
    key = make_key(ksk=False).key
    p = adapter(fake, clock)
    run(p.set_foreign_dnskeys(ZONE, [key], 3600))
    # set_foreign_dnskeys returned only once deSEC's own reads agreed
    assert run(p.read_zone(ZONE)).foreign_dnskeys == {key}


def test_a_write_never_read_back_fails_after_the_consistency_window() -> None:
    fake, clock = FakeDesec(), FakeClock()
    fake.lag = 10_000
    with pytest.raises(ProviderError, match=r"still answers the old data after 5s"):
        run(adapter(fake, clock, consistency_window="5s").set_foreign_dnskeys(
            ZONE, [make_key(ksk=False).key], 3600))


def test_a_ttl_below_the_domain_minimum_is_raised_to_it() -> None:
    fake, clock = FakeDesec(minimum_ttl=3600), FakeClock()
    run(adapter(fake, clock).set_rrset(ZONE, f"_acme-challenge.{ZONE}", "TXT", ['"t"'], 60))
    assert fake.rrsets[("_acme-challenge", "TXT")]["ttl"] == 3600


def test_own_keys_come_from_dns_and_are_never_written_as_foreign() -> None:
    fake, clock = FakeDesec(), FakeClock()
    p = adapter(fake, clock)
    state = run(p.read_zone(ZONE))
    assert [(k.key, k.role) for k in state.own_keys] == [(fake.csk.key, "csk")]
    foreign = make_key(ksk=True).key
    run(p.set_foreign_dnskeys(ZONE, [fake.csk.key, foreign], 3600))
    assert fake.written_dnskeys() == {foreign}  # deSEC adds its own key itself


def test_a_successor_desec_prepublished_is_its_own_published_not_active() -> None:
    """Follow mode: a served key that signs nothing and that the API does not hold is
    deSEC's own successor, so the controller imports it elsewhere before deSEC signs with
    it; a key the controller wrote stays foreign."""
    fake, clock = FakeDesec(), FakeClock()
    p = adapter(fake, clock)
    foreign, successor = make_key(ksk=False).key, make_key(ksk=False).key
    run(p.set_foreign_dnskeys(ZONE, [foreign], 3600))
    fake.prepublished.add(successor)
    state = run(p.read_zone(ZONE))
    (succ,) = [k for k in state.own_keys if k.key == successor]
    assert succ.published and not succ.active and succ.role == "zsk"
    assert state.foreign_dnskeys == {foreign}


def test_a_domain_not_in_the_account_is_zone_missing() -> None:
    fake, clock = FakeDesec(), FakeClock()
    with pytest.raises(ZoneMissing):
        run(adapter(fake, clock).read_zone("other.test."))


def test_nameservers_that_do_not_answer_are_a_provider_error_naming_them() -> None:
    """Own keys are read by DNS: without an answer the zone cannot be read (check reports
    it as the provider's problem instead of stopping)."""
    config = DesecProviderConfig(name="d0", api_url="https://desec.example/api/v1",
                                 token=SecretStr(GOOD), nameservers=["127.0.0.1:9"],
                                 timeout="1s")
    p = DesecProvider(config, transport=FakeDesec().transport())
    with pytest.raises(ProviderError, match=r"none of its nameservers serves the signed zone "
                                            r"\(127.0.0.1:9: "):
        run(p.read_zone(ZONE))


def test_a_pagination_link_to_another_host_is_not_followed() -> None:
    """The token travels with every request, so a Link header naming another host is
    refused instead of followed."""
    fake, clock = FakeDesec(page_size=1), FakeClock()
    fake.rrsets[("www", "A")] = {"ttl": 3600, "records": ["192.0.2.1"]}
    fake.link_base = "https://evil.example/api/v1"
    with pytest.raises(ProviderError, match=r"pagination link to another host "
                                            r"\(https://evil.example"):
        run(adapter(fake, clock).read_zone(ZONE))
    assert all(r.url.host == "desec.example" for r in fake.requests)
