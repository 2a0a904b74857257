"""providers/parent/client.DsyncParent: one zone's parent end to end against an in-test
authoritative server (DSYNC, the receiver's address and KEY) and UPDATE receiver."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import dns.name
import dns.opcode
import dns.rcode
import pytest
from fake_parent import Receiver, start_auth
from test_parent_dsync import PARENT_ZONE, _reply

from core import keystate
from core.config import ParentConfig
from core.delegation_update import delegation_update
from core.keystate import KeyState, KeyStateCode, ParentKeyState
from core.sig0 import Sig0Key, parse, verify
from providers.parent import DsyncParent, ParentError, ParentUnreachable

N = dns.name.from_text
CHILD, PARENT, TARGET = N("child.test."), N("test."), N("updater.test.")
RECEIVER_KEY = Sig0Key.generate(TARGET)


@pytest.fixture
def config(tmp_path: Path) -> ParentConfig:
    directory = tmp_path / "sig0"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    return ParentConfig(type="dsync", sig0_directory=directory, sig0_algorithm="ED25519")


def _zone(port: int, *, dsync: bool = True, key: Sig0Key | None = RECEIVER_KEY) -> str:
    text = PARENT_ZONE
    if dsync:
        text += f"_dsync 3600 IN DSYNC ANY 2 {port} updater.test.\n"
    if key is not None:
        text += f"updater 3600 IN KEY {key.key_rdata().to_text()}\n"
    return text


async def _with_parent(config: ParentConfig, handle, zone_kw=None, body=None):  # type: ignore[no-untyped-def]
    receiver = await Receiver(handle).start()
    server, transport = await start_auth(_zone(receiver.port, **(zone_kw or {})), "test.")
    try:
        parent = DsyncParent(CHILD, config, [server], timeout=3)
        return await body(parent), receiver
    finally:
        transport.close()
        await receiver.stop()


def test_bootstrap_inquiry_then_update(config: ParentConfig) -> None:
    trusted_keys: list[object] = []

    async def handle(request: bytes) -> bytes:
        signed = parse(request)
        if signed.message.opcode() == dns.opcode.QUERY:  # KeyState inquiry
            asked = keystate.find(signed.message)
            assert asked is not None
            return _reply(request, opt=KeyState(asked.key_id, KeyStateCode.KEY_TRUSTED),
                          signed_by=RECEIVER_KEY)
        verify(signed, trusted_keys, now=int(time.time()), name=CHILD)  # type: ignore[arg-type]
        return _reply(request, signed_by=RECEIVER_KEY)

    async def body(parent: DsyncParent) -> tuple[object, object, object]:
        found = await parent.discover()
        key = parent.ensure_key()
        assert parent.ensure_key().key_rdata() == key.key_rdata()  # the same key next time
        trusted_keys.extend(parent.published_keys())
        state = await parent.key_state()
        update = delegation_update(PARENT, CHILD, ns=[N("ns1.example.")])
        answer = await parent.send(update)
        return found, state, answer

    (found, state, answer), receiver = asyncio.run(_with_parent(config, handle, body=body))
    assert found.endpoint.target == TARGET  # type: ignore[attr-defined]
    assert state.view == ParentKeyState.TRUSTED  # type: ignore[attr-defined]
    assert answer.receiver_verified is True  # type: ignore[attr-defined]
    assert len(receiver.seen) == 2
    assert config.sig0_directory is not None
    assert len(list(config.sig0_directory.glob("Kchild.test.+015+*.private"))) == 1


def test_answer_signed_by_another_key_is_not_believed(config: ParentConfig) -> None:
    impostor = Sig0Key.generate(TARGET)

    async def handle(request: bytes) -> bytes:
        return _reply(request, signed_by=impostor)

    async def body(parent: DsyncParent) -> object:
        return await parent.send(delegation_update(PARENT, CHILD, ds=[]))

    with pytest.raises(ParentUnreachable, match="not signed by the receiver's published KEY"):
        asyncio.run(_with_parent(config, handle, body=body))


def test_receiver_without_key_is_taken_unsigned(config: ParentConfig) -> None:
    async def handle(request: bytes) -> bytes:
        return _reply(request, dns.rcode.REFUSED, ede=(18, "not trusted yet"))

    async def body(parent: DsyncParent) -> object:
        return await parent.send(delegation_update(PARENT, CHILD, ds=[]))

    with pytest.raises(ParentError, match="REFUSED; EDE 18 'not trusted yet'"):
        asyncio.run(_with_parent(config, handle, zone_kw={"key": None}, body=body))


def test_parent_without_dsync(config: ParentConfig) -> None:
    async def handle(request: bytes) -> bytes:
        raise AssertionError("nothing may be sent")

    async def body(parent: DsyncParent) -> object:
        found = await parent.discover()
        assert found.endpoint is None
        return await parent.send(delegation_update(PARENT, CHILD, ds=[]))

    with pytest.raises(ParentError, match="offers no DSYNC UPDATE endpoint"):
        asyncio.run(_with_parent(config, handle, zone_kw={"dsync": False}, body=body))


def test_only_for_dsync_parents(tmp_path: Path) -> None:
    with pytest.raises(ParentError, match='is not type = "dsync"'):
        DsyncParent(CHILD, ParentConfig(), ["127.0.0.1:53"])


def test_check_item(config: ParentConfig) -> None:
    from core.config import ZoneConfig
    from orchestrator.parent_checks import dsync_parent_check

    zone = ZoneConfig(name="child.test.", model=2, signers=["p0"], parent=config)

    async def scenario(zone_kw: dict[str, object]) -> dict[str, object]:
        receiver = await Receiver(lambda r: asyncio.sleep(0, None)).start()
        server, transport = await start_auth(_zone(receiver.port, **zone_kw), "test.")
        try:
            return await dsync_parent_check(zone, [server])
        finally:
            transport.close()
            await receiver.stop()

    item = asyncio.run(scenario({}))
    assert item["ok"] is True and item["zone"] == "child.test."
    assert item["notes"] == [
        "no SIG(0) key yet: the first use makes one (ED25519)",
        "channel: dsync UPDATE to updater.test. port " + item["notes"][1].rsplit(" ", 1)[1],
        "the receiver at updater.test. publishes 1 KEY(s); its answers are checked against "
        "them"]
    item = asyncio.run(scenario({"dsync": False}))
    assert item["ok"] is True
    assert item["notes"][1] == ("channel: cds-scan (the parent publishes no DSYNC UPDATE "
                                "endpoint)")
    assert config.sig0_directory is not None
    config.sig0_directory.chmod(0o755)
    item = asyncio.run(scenario({}))
    assert item["ok"] is False
    assert "run `chmod 700" in item["problems"][0]  # type: ignore[index]
