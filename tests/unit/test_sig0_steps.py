"""The SIG(0) roll's act phases are safe to re-run after a crash: a successor an
interrupted attempt generated is adopted (not a third key), and the roll UPDATE is not
sent again once the parent trusts the successor (the predecessor it would be signed by
is no longer trusted)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.update
import pytest
from dns.dnssectypes import Algorithm

from core.keystate import ParentKeyState
from core.sig0 import Sig0Key
from orchestrator.decide.sig0_roll import Sig0Roll
from orchestrator.engine.sig0_steps import _add_successor, _discard, _roll_at_parent
from providers.sig0keys import Sig0KeyStore

ZONE = dns.name.from_text("child.test.")
PARENT = dns.name.from_text("test.")


@dataclass
class Found:
    parent: dns.name.Name = PARENT


@dataclass
class Answer:
    view: ParentKeyState
    server: str = "127.0.0.1"


@dataclass
class FakeParent:
    """What the steps use of DsyncParent: its store, zone, algorithm, KeyState, send."""

    store: Sig0KeyStore
    says: ParentKeyState = ParentKeyState.UNKNOWN
    zone: dns.name.Name = ZONE
    algorithm: Algorithm = Algorithm.ECDSAP256SHA256
    asked: list[int] = field(default_factory=list)
    sent: list[tuple[dns.update.UpdateMessage, int]] = field(default_factory=list)

    async def key_state(self, key: Sig0Key) -> Answer:
        self.asked.append(key.key_tag)
        return Answer(self.says)

    async def discover(self) -> Found:
        return Found()

    async def send(self, update: dns.update.UpdateMessage, key: Sig0Key) -> Answer:
        self.sent.append((update, key.key_tag))
        return Answer(ParentKeyState.TRUSTED)


@pytest.fixture
def store(tmp_path: Path) -> Sig0KeyStore:
    path = tmp_path / "sig0"
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    return Sig0KeyStore(path)


def test_the_successor_is_generated_once_and_adopted_after_a_crash(
        store: Sig0KeyStore) -> None:
    old = store.generate(ZONE)
    client: Any = FakeParent(store)
    start = Sig0Roll(old.key_id, old.key_tag)
    made, note = _add_successor(client, start)
    assert note.startswith("generated") and made.new_id is not None
    assert len(store.list_keys(ZONE)) == 2
    # the act re-run before its transition was written: the key on disk is adopted
    again, note = _add_successor(client, start)
    assert note.startswith("adopted") and again == made
    # recorded already: nothing to do
    assert _add_successor(client, made) == (made, f"successor SIG(0) key {made.new_tag} "
                                            "already in the store")
    assert len(store.list_keys(ZONE)) == 2


def test_the_roll_update_is_signed_by_the_predecessor_and_sent_once(
        store: Sig0KeyStore) -> None:
    old = store.generate(ZONE)
    new = store.generate(ZONE)
    roll = Sig0Roll(old.key_id, old.key_tag, new.key_id, new.key_tag)
    client = FakeParent(store)
    said = asyncio.run(_roll_at_parent(client, roll))  # type: ignore[arg-type]
    assert f"signed by SIG(0) key {old.key_tag}" in said and client.asked == [new.key_tag]
    [(update, signer)] = client.sent
    assert signer == old.key_tag
    keys = [rrset for rrset in update.update if rrset.rdtype == dns.rdatatype.KEY]
    assert [list(r) for r in keys if not r.deleting] == [[new.key]]
    client.says = ParentKeyState.TRUSTED  # a re-run after the parent moved its trust
    said = asyncio.run(_roll_at_parent(client, roll))  # type: ignore[arg-type]
    assert "already trusts" in said and len(client.sent) == 1


def test_abort_discards_the_successor_even_one_never_recorded(store: Sig0KeyStore) -> None:
    old = store.generate(ZONE)
    client: Any = FakeParent(store)
    made, _ = _add_successor(client, Sig0Roll(old.key_id, old.key_tag))
    # the act was cut short before recording the successor: the abort finds it on disk
    assert _discard(client, Sig0Roll(old.key_id, old.key_tag)) == [
        f"retired SIG(0) key {made.new_tag} ({made.new_id}) to {store.directory / 'retired'}"]
    assert [k.key_id for k in store.list_keys(ZONE)] == [old.key_id]
    assert _discard(client, made) == [f"SIG(0) key {made.new_tag} already retired"]
