"""The steps of the SIG(0) key roll (runbooks/sig0-rollover.toml), and its start.

Each step is persisted in two phases: ``act`` changes the zone's SIG(0) key store (or,
in ``roll-at-parent``, asks the parent to trust the successor) and publishes the KEY
RRset, every key of the store, at every signer; ``observe`` waits for the step's
observations (``key-served``, ``parent-key``) and leaves for the next step. Re-running
an ``act`` after a crash is safe: a successor an interrupted attempt generated is
adopted, the roll UPDATE is not sent again once the parent trusts the successor, and
retiring a key already retired does nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dns.rdatatype

from core.config import ZoneConfig
from core.delegation_update import key_bootstrap
from core.errors import Refused, UsageError
from core.keystate import ParentKeyState
from orchestrator.decide.checks import CheckContext, unmet
from orchestrator.decide.sig0_roll import Sig0Observed, Sig0Roll
from orchestrator.engine.lease import zone_lease
from orchestrator.engine.parent_channel import DsyncChannel
from orchestrator.engine.phase_state import Outcome, ProcessAt
from orchestrator.runtime import LEASE_SECONDS
from providers.parent.client import DsyncParent
from providers.parent.errors import ParentError
from providers.sig0keys import RETIRED, Sig0KeyStore
from state.info import ProcessInfo

if TYPE_CHECKING:
    from orchestrator.engine.runner import Engine

KIND = "sig0-rollover"
# What a SIG(0) step reads from the signers' nameservers: the DNSKEY RRset, whose TTL the
# KEY RRset is published with (see parent_channel._key_ttl).
_POLL = (dns.rdatatype.DNSKEY,)


def _channel(engine: Engine, zone: ZoneConfig) -> DsyncChannel:
    channel = engine.parent_channel(zone)
    if not isinstance(channel, DsyncChannel):
        raise UsageError(f"{zone.name}: a SIG(0) key roll needs [zones.parent] type = "
                         f"\"dsync\" (it is {zone.parent.type!r}): the key signs UPDATEs "
                         "to a DSYNC parent")
    return channel


async def start(engine: Engine, zone: ZoneConfig, reason: str = "SIG(0) key roll requested"
                ) -> ProcessInfo:
    """Record a SIG(0) key roll once the parent trusts the zone's one current key."""
    async with zone_lease(engine.rt.store, zone.name, LEASE_SECONDS):
        channel = _channel(engine, zone)
        engine._refuse_busy(zone)
        client = await channel.client()
        keys = client.store.list_keys(client.zone)
        if len(keys) != 1:
            raise Refused(f"{zone.name}: refusing to start a SIG(0) key roll; nothing was "
                          f"changed", [
                              f"the key store {client.store.directory} holds {len(keys)} "
                              f"SIG(0) keys of the zone ({', '.join(k.key_id for k in keys)}"
                              "); a roll starts from exactly one, the key the parent trusts "
                              "(none: run 'multisigner sync' so the parent learns one)"])
        try:
            answer = await client.key_state()
        except ParentError as exc:
            raise Refused(f"{zone.name}: refusing to start a SIG(0) key roll; nothing was "
                          "changed", [f"the parent cannot be asked about the key: {exc}"]
                          ) from None
        if answer.view != ParentKeyState.TRUSTED:
            raise Refused(f"{zone.name}: refusing to start a SIG(0) key roll; nothing was "
                          "changed", [f"the parent does not trust SIG(0) key "
                                      f"{keys[0].key_tag} ({answer.detail}); run "
                                      "'multisigner sync' so it learns the key first"])
        roll = Sig0Roll(keys[0].key_id, keys[0].key_tag)
        proc = engine._record(zone, KIND, roll, signer=None, reason=reason,
                              evidence={"old_key": keys[0].key_id, "parent": answer.detail})
        engine.report(f"{zone.name}: started {KIND} {proc.id[:8]}: replacing SIG(0) key "
                      f"{keys[0].key_tag}")
        return proc


async def phase(engine: Engine, here: ProcessAt, name: str) -> Outcome:
    """Run phase ``name`` of a SIG(0) step (``act`` or ``observe``)."""
    if name == "act":
        return await _act(engine, here)
    return await _observe(engine, here)


def _roll(here: ProcessAt) -> Sig0Roll:
    if not isinstance(here.data.payload, Sig0Roll):
        raise UsageError(f"process {here.proc.id} has no SIG(0) key roll in its data")
    return here.data.payload


async def _act(engine: Engine, here: ProcessAt) -> Outcome:
    channel = _channel(engine, here.zone)
    client = await channel.client()
    roll = _roll(here)
    done: list[str] = []
    action = here.step.sig0
    try:
        if action == "add-successor":
            roll, note = _add_successor(client, roll)
            done.append(note)
        elif action == "roll-at-parent":
            done.append(await _roll_at_parent(client, roll))
        elif action == "retire-predecessor":
            done.append(_retire(client.store, roll.old_id, roll.old_tag))
        elif action == "discard-successor":
            done += _discard(client, roll)
    except ParentError as exc:
        return engine._wait(here, f"parent: {exc}", parent=True, parent_only=True)
    channel.forget_key_state()  # the store's keys, or the parent's trust, changed
    view = await engine._observe_api(here.zone, api=False, signers=here.signers, only=_POLL)
    published = await channel.publish_key(view)
    data = here.data.but(payload=roll, observe_since=datetime.now(UTC), stalled=None)
    evidence: dict[str, object] = {"sig0": done, "changes": published}
    if action == "roll-at-parent":
        evidence["parent_update"] = done[-1]
    return engine._move(here, "observe", f"{here.step.title}: " + "; ".join(
        done + published or ["nothing to change"]), data=data, evidence=evidence,
        waiting_for=", ".join(here.step.observe) or "nothing")


def _add_successor(client: DsyncParent, roll: Sig0Roll) -> tuple[Sig0Roll, str]:
    """The successor: the one already recorded, else one an interrupted attempt
    generated (a key of the zone other than the predecessor), else a new one."""
    if roll.new_id is not None:
        return roll, f"successor SIG(0) key {roll.new_tag} already in the store"
    others = [k for k in client.store.list_keys(client.zone) if k.key_id != roll.old_id]
    if others:
        key = others[-1]
        note = f"adopted SIG(0) key {key.key_tag}: generated by an interrupted attempt"
    else:
        key = client.store.generate(client.zone, client.algorithm)
        note = f"generated successor SIG(0) key {key.key_tag} ({key.key_id})"
    return Sig0Roll(roll.old_id, roll.old_tag, key.key_id, key.key_tag), note


async def _roll_at_parent(client: DsyncParent, roll: Sig0Roll) -> str:
    """Send the UPDATE replacing the zone's KEY RRset at the parent with the successor,
    signed by the predecessor; not when the parent trusts the successor already (a
    re-run after a crash: the predecessor is no longer trusted, its UPDATE would fail)."""
    if roll.new_id is None:
        raise UsageError("the SIG(0) key roll has no successor recorded")
    successor = client.store.load(roll.new_id)
    state = await client.key_state(successor)
    if state.view == ParentKeyState.TRUSTED:
        return f"the parent already trusts SIG(0) key {roll.new_tag}; no UPDATE sent"
    found = await client.discover()
    update = key_bootstrap(found.parent, client.zone, successor.key_rdata())
    answer = await client.send(update, client.store.load(roll.old_id))
    return (f"sent the KEY roll UPDATE (KEY = SIG(0) key {roll.new_tag}) signed by SIG(0) "
            f"key {roll.old_tag} to {answer.server}: NOERROR")


def _discard(client: DsyncParent, roll: Sig0Roll) -> list[str]:
    """Retire the successor: the one recorded, else any key of the zone but the
    predecessor (one an act cut short generated before it could record it)."""
    if roll.new_id is not None:
        return [_retire(client.store, roll.new_id, roll.new_tag)]
    return [_retire(client.store, k.key_id, k.key_tag)
            for k in client.store.list_keys(client.zone) if k.key_id != roll.old_id]


def _retire(store: Sig0KeyStore, key_id: str, tag: int | None) -> str:
    if store.retire(key_id):
        return f"retired SIG(0) key {tag} ({key_id}) to {store.directory / RETIRED}"
    return f"SIG(0) key {tag} already retired"


async def _observe(engine: Engine, here: ProcessAt) -> Outcome:
    channel = _channel(engine, here.zone)
    client = await channel.client()
    roll = _roll(here)
    observe = here.step.observe
    view = await engine._observe_api(here.zone, api=False, signers=here.signers, only=_POLL)
    want = frozenset(k.to_text() for k in client.published_keys())
    served = await channel.served_keys(client) if "key-served" in observe else {}
    parent_state = None
    if "parent-key" in observe and roll.new_id is not None:
        try:
            parent_state = (await client.key_state(client.store.load(roll.new_id))).view.value
        except ParentError as exc:
            parent_state = f"no answer ({exc})"
    observed = Sig0Observed(want, served, parent_state)
    missing = unmet(CheckContext(here.step, view, None, roll, here.signers,
                                 sig0=observed))
    if missing:
        at_parent = "parent-key" in observe
        return engine._wait(here, "; ".join(missing), parent=at_parent,
                            parent_only=at_parent)
    return engine._observed(here, view)
