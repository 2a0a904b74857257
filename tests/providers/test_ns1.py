"""The NS1 adapter against the fake in ``fake_ns1.py`` (built from NS1's documented
request/response shapes, not from the live service): algorithm 13 only, the external key
set it owns (others untouched), a key without the manage-zones permission, 429 and 5xx
against the retry budget, and stale reads after a write."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from fake_ns1 import GOOD, READONLY, FakeNs1
from fakeapi import ZONE, FakeClock
from pydantic import SecretStr
from unit.signing import ED25519, make_key

from core.config import Ns1ProviderConfig
from core.errors import ProviderAuthError, ProviderError, ProviderUnreachable
from providers.ns1.adapter import Ns1Provider

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def adapter(fake: FakeNs1, clock: FakeClock, token: str = GOOD, **settings: Any
            ) -> Ns1Provider:
    config = Ns1ProviderConfig(name="n0", api_url="https://ns1.example/v1",
                               token=SecretStr(token), nameservers=["192.0.2.53"], **settings)
    return Ns1Provider(config, transport=fake.transport(), clock=clock, sleep=clock.sleep)


def test_own_keys_exclude_every_external_key_set() -> None:
    fake, clock = FakeNs1(), FakeClock()
    other = make_key(ksk=False).key
    fake.key_sets["by-hand"] = {"dnskey": {"ttl": 3600, "data": [
        dict(zip(("flags", "protocol", "algorithm", "public_key"),
                 [256, 3, 13, other.text.split(" ", 3)[3]], strict=True))]}}
    p = adapter(fake, clock)
    state = run(p.read_zone(ZONE))
    assert {(k.key, k.role) for k in state.own_keys} == {(fake.ksk.key, "ksk"),
                                                         (fake.zsk.key, "zsk")}
    assert state.foreign_dnskeys == frozenset()  # the operator's set is not ours
    mine = make_key(ksk=False).key
    run(p.set_foreign_dnskeys(ZONE, [mine], 3600))
    run(p.set_foreign_dnskeys(ZONE, [], 3600))
    assert set(fake.key_sets) == {"by-hand"}


def test_a_key_of_another_algorithm_is_refused_before_any_write() -> None:
    fake, clock = FakeNs1(), FakeClock()
    ed = make_key(ksk=False, algorithm=ED25519).key
    with pytest.raises(ProviderError, match=r"algorithm 13 \(ECDSAP256SHA256\) only; "
                                            r"refusing .*\(algorithm 15\); nothing changed"):
        run(adapter(fake, clock).set_foreign_dnskeys(ZONE, [make_key(ksk=False).key, ed],
                                                      3600))
    assert fake.key_sets == {}
    assert fake.count("PUT", "/external_keys/") == 0


def test_a_key_without_manage_permission_is_named() -> None:
    fake, clock = FakeNs1(), FakeClock()
    with pytest.raises(ProviderAuthError, match=r"HTTP 403: insufficient permissions.*"
                                                r"manage zones"):
        run(adapter(fake, clock, token=READONLY).set_foreign_dnskeys(
            ZONE, [make_key(ksk=False).key], 3600))


def test_throttling_without_retry_after_backs_off_and_storms_give_up() -> None:
    fake, clock = FakeNs1(), FakeClock()
    fake.throttles = [None, None]
    run(adapter(fake, clock).check_access())
    assert clock.slept == [0.5, 1.0]
    fake.always_fail = 500
    with pytest.raises(ProviderUnreachable, match="retry_budget 30s"):
        run(adapter(fake, clock, retry_budget="30s").read_zone(ZONE))


def test_stale_reads_after_a_write_are_waited_out() -> None:
    fake, clock = FakeNs1(), FakeClock()
    fake.lag = 3
    key = make_key(ksk=False).key
    p = adapter(fake, clock)
    run(p.set_foreign_dnskeys(ZONE, [key], 3600))
    assert run(p.read_zone(ZONE)).foreign_dnskeys == {key}
