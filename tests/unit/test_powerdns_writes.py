"""PowerDNS key creation is never repeated blindly; a key deletion repeated after its
answer was lost is not mistaken for a missing zone.

respx fakes PowerDNS's documented API shape (``GET``/``POST
/api/v1/servers/localhost/zones/{zone}/cryptokeys``, cryptokey objects with ``id``,
``keytype``, ``active``, ``published``, ``dnskey``, ``algorithm``; errors as
``{"error": "..."}``), including a server that creates the key and then loses the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from core.config import ProviderConfig
from core.errors import ProviderError, ProviderUnreachable, ZoneMissing
from core.observation import ApiKey
from providers.powerdns import PowerDNSProvider

BASE = "http://127.0.0.1:8081/api/v1/servers/localhost"
ZONE = "example.test."
KEYS = f"{BASE}/zones/example.test./cryptokeys"
ZSK = ("256 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+"
       "KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==")
OTHER = ("256 3 13 oJMRESz5E4gYzS/q6XDrvU1qMPYIjCWzJaOau8XNEZeqCYKD5ar0IRd8KqXXFJkqmVfRvMGPm"
         "M1x8fGAa2XhSA==")


class FakePdns:
    """The cryptokeys of one zone; ``on_post`` decides what a POST does."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [self.item(1, "257 3 13 " + "A" * 86 + "==", True)]
        self.posts = 0
        self.on_post: list[Callable[[httpx.Request], httpx.Response]] = []
        self.router: respx.MockRouter | None = None  # set by the fixture

    @staticmethod
    def item(key_id: int, dnskey: str, active: bool) -> dict[str, Any]:
        flags = int(dnskey.split(maxsplit=1)[0])
        return {"type": "Cryptokey", "id": key_id,
                "keytype": "ksk" if flags == 257 else "zsk", "active": active,
                "published": True, "dnskey": dnskey,
                "algorithm": "ECDSAP256SHA256", "flags": flags}

    def create(self, dnskey: str = ZSK) -> dict[str, Any]:
        made = self.item(max(k["id"] for k in self.keys) + 1, dnskey, False)
        self.keys.append(made)
        return made

    def get(self, _request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=self.keys)

    def post(self, request: httpx.Request) -> httpx.Response:
        self.posts += 1
        return self.on_post.pop(0)(request)


def created(fake: FakePdns) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _r: httpx.Response(201, json=fake.create())


def created_then_timeout(fake: FakePdns, *extra: str) -> Callable[[httpx.Request], httpx.Response]:
    def run(request: httpx.Request) -> httpx.Response:
        fake.create()
        for dnskey in extra:
            fake.create(dnskey)
        raise httpx.ReadTimeout("read timed out", request=request)
    return run


def answer(status: int, **kwargs: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _r: httpx.Response(status, **kwargs)


@pytest.fixture
def fake() -> Iterator[FakePdns]:
    pdns = FakePdns()
    with respx.mock(assert_all_called=False) as mock:
        mock.get(KEYS).mock(side_effect=pdns.get)
        mock.post(KEYS).mock(side_effect=pdns.post)
        pdns.router = mock
        yield pdns


def create(attempts: int = 4) -> ApiKey:
    config = ProviderConfig(name="p0", type="powerdns", api_url="http://127.0.0.1:8081",
                            api_key=SecretStr("k"), nameservers=["127.0.0.1:5300"])

    async def run() -> ApiKey:
        provider = PowerDNSProvider(config, attempts=attempts)
        try:
            return await provider.create_key(ZONE, "zsk", "ECDSAP256SHA256", active=False,
                                             published=True)
        finally:
            await provider.aclose()

    return asyncio.run(run())


def test_a_plain_create_posts_once(fake: FakePdns) -> None:
    fake.on_post = [created(fake)]
    key = create()
    assert (fake.posts, key.key_id, key.key.text) == (1, "2", ZSK)


def test_a_key_made_before_the_answer_was_lost_is_adopted_not_made_again(
        fake: FakePdns) -> None:
    fake.on_post = [created_then_timeout(fake), created(fake)]
    key = create()
    assert fake.posts == 1, "the POST was repeated after a read timeout"
    assert (key.key_id, key.key.text, key.active, key.role) == ("2", ZSK, False, "zsk")
    assert len(fake.keys) == 2


def test_a_timeout_with_no_key_yet_fails_without_repeating(fake: FakePdns) -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    fake.on_post = [lost, created(fake)]
    with pytest.raises(ProviderUnreachable, match="not repeated"):
        create()
    assert fake.posts == 1 and len(fake.keys) == 1


def test_a_proxy_gateway_timeout_is_ambiguous_too(fake: FakePdns) -> None:
    fake.on_post = [answer(504, text="<html>gateway timeout</html>"), created(fake)]
    with pytest.raises(ProviderUnreachable, match="HTTP 504"):
        create()
    assert fake.posts == 1


def test_powerdns_own_500_with_no_key_is_asked_again(fake: FakePdns) -> None:
    # PowerDNS answered (its JSON error): it finished, and listed no new key -- safe.
    fake.on_post = [answer(500, json={"error": "database is locked"}), created(fake)]
    key = create()
    assert fake.posts == 2 and len(fake.keys) == 2 and key.key_id == "2"


def test_powerdns_own_500_after_making_the_key_adopts_it(fake: FakePdns) -> None:
    def made_then_failed(_r: httpx.Request) -> httpx.Response:
        fake.create()
        return httpx.Response(500, json={"error": "rectify failed"})

    fake.on_post = [made_then_failed, created(fake)]
    key = create()
    assert fake.posts == 1 and len(fake.keys) == 2 and key.key_id == "2"


def test_several_new_keys_are_not_adopted(fake: FakePdns) -> None:
    fake.on_post = [created_then_timeout(fake, OTHER)]
    with pytest.raises(ProviderError, match=r"key\(s\) 2, 3 appeared") as info:
        create()
    assert not isinstance(info.value, ProviderUnreachable)
    assert fake.posts == 1


def test_a_new_key_unlike_the_request_is_not_adopted(fake: FakePdns) -> None:
    def other_made(request: httpx.Request) -> httpx.Response:
        fake.create("257 3 13 " + "B" * 86 + "==")  # a KSK: not what was asked for
        raise httpx.ReadTimeout("read timed out", request=request)

    fake.on_post = [other_made]
    with pytest.raises(ProviderError, match="none is adopted"):
        create()


def test_a_refused_connection_is_retried(fake: FakePdns) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fake.on_post = [refused, created(fake)]
    key = create()
    assert fake.posts == 2 and len(fake.keys) == 2 and key.key_id == "2"


def test_repeated_500s_give_up_clearly(fake: FakePdns) -> None:
    fake.on_post = [answer(500, json={"error": "database is locked"}) for _ in range(3)]
    with pytest.raises(ProviderUnreachable, match="failed 3 times"):
        create(attempts=3)
    assert fake.posts == 3 and len(fake.keys) == 1


def delete(key_id: str) -> None:
    config = ProviderConfig(name="p0", type="powerdns", api_url="http://127.0.0.1:8081",
                            api_key=SecretStr("k"), nameservers=["127.0.0.1:5300"])

    async def run() -> None:
        provider = PowerDNSProvider(config)
        try:
            await provider.delete_key(ZONE, key_id)
        finally:
            await provider.aclose()

    asyncio.run(run())


def test_a_delete_repeated_after_its_answer_was_lost_succeeds(fake: FakePdns) -> None:
    fake.create()
    deletes: list[int] = []

    def lost_then_404(request: httpx.Request) -> httpx.Response:
        deletes.append(1)
        if len(deletes) == 1:  # PowerDNS deletes the key, the answer never arrives
            fake.keys = [k for k in fake.keys if k["id"] != 2]
            raise httpx.ReadTimeout("read timed out", request=request)
        return httpx.Response(404, text="Not Found")  # what PowerDNS says for a gone key

    assert fake.router is not None
    fake.router.delete(f"{KEYS}/2").mock(side_effect=lost_then_404)
    delete("2")
    assert len(deletes) == 2 and [k["id"] for k in fake.keys] == [1]


def test_a_delete_in_a_missing_zone_still_says_so() -> None:
    with respx.mock() as mock:
        mock.delete(f"{KEYS}/2").mock(return_value=httpx.Response(404, text="Not Found"))
        mock.get(KEYS).mock(return_value=httpx.Response(404, text="Not Found"))
        with pytest.raises(ZoneMissing, match="does not exist at this provider"):
            delete("2")


def test_a_404_for_a_key_still_listed_is_not_hidden(fake: FakePdns) -> None:
    fake.create()
    assert fake.router is not None
    fake.router.delete(f"{KEYS}/2").mock(return_value=httpx.Response(404, text="Not Found"))
    with pytest.raises(ZoneMissing):
        delete("2")
