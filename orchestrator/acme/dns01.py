"""``acme publish`` and ``acme cleanup``: one DNS-01 value at every signer of the zone the
challenge name leads to.

Publish writes everywhere reachable, then, if any provider failed (or, with ``wait``,
some nameserver did not serve the value validly in time), removes the value again from
where it was added and fails: success means every provider holds it (and, with
``wait``, every nameserver serves it). Cleanup removes only the given value (without one:
every DNS-01-looking value) and leaves any other record of the RRset alone. Every publish
and cleanup is recorded in the zone's history (kind "acme"); the values are not secret.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from core.errors import MultisignerError
from orchestrator.acme.propagation import wait_for
from orchestrator.acme.resolve import Target, locate
from orchestrator.acme.rrsets import Change, change_txt, check_writable, zone_lease
from orchestrator.decide.acme import (
    CHALLENGE_LABEL,
    challenge_values,
    check_digest,
    with_value,
    without_values,
)
from orchestrator.runtime import Reporter, Runtime

DEFAULT_TTL = 60


class PublishFailed(MultisignerError):
    """Not every provider holds (or serves) the value; what was written is removed."""


@dataclass
class Result:
    target: Target
    action: str
    values: list[str]
    change: Change
    propagation_seconds: float | None = None
    addresses: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "zone": self.target.zone.name, "name": self.target.name.to_text(),
            "chain": [n.to_text() for n in self.target.chain], "action": self.action,
            "values": self.values, "providers": self.change.changed + self.change.unchanged,
            "changed": self.change.changed, "write_seconds": self.change.seconds,
            "propagation_seconds": self.propagation_seconds,
            "nameserver_addresses": self.addresses,
        }


def _record(rt: Runtime, result: Result, state: str, reason: str,
            extra: dict[str, Any] | None = None) -> None:
    rt.store.append_history(
        result.target.zone.name, process_id=None, kind="acme", from_state=None,
        to_state=state, actor=rt.actor, reason=reason,
        evidence={**result.as_json(), "failed": result.change.failed, **(extra or {})})


async def publish(rt: Runtime, fqdn: str, value: str, *, wait: bool, timeout: float | None,
                  ttl: int, report: Reporter, resolver: str | None = None,
                  label: str | None = CHALLENGE_LABEL, check: bool = True) -> Result:
    """Publish ``value`` for ``fqdn`` at every signer (see the module doc)."""
    if check:
        value = check_digest(value)
    target = await locate(rt, fqdn, label, resolver=resolver)
    zone = target.zone
    signers = check_writable(rt, zone)
    add = functools.partial(_add, value=value)
    async with zone_lease(rt, zone.name):
        change = await change_txt(rt, zone, target.name, add, ttl, signers)
        result = Result(target, "publish", [value], change)
        if not change.ok:
            undo = await _undo(rt, result, value)
            _record(rt, result, "publish-failed", "a provider failed; value removed again",
                    {"undo_failed": undo.failed})
            raise PublishFailed(_failure(result, undo))
        _record(rt, result, "published", f"{value} at {target.describe()}")
    if not wait:
        return result
    limit = timeout if timeout is not None else zone.policy.propagation_timeout.total_seconds()
    try:
        result.propagation_seconds, result.addresses = await wait_for(
            rt, zone, target.name, [value], present=True, timeout=limit, report=report,
            repair=functools.partial(_republish, rt, result, ttl, report))
    except MultisignerError as exc:
        async with zone_lease(rt, zone.name):
            undo = await _undo(rt, result, value)
            _record(rt, result, "publish-failed", f"not served in time: {exc}",
                    {"undo_failed": undo.failed})
        raise PublishFailed(f"{exc}; {_undone(result, undo)}") from None
    async with zone_lease(rt, zone.name):
        _record(rt, result, "propagated",
                f"served by {result.addresses} nameserver addresses after "
                f"{result.propagation_seconds}s")
    return result


async def _republish(rt: Runtime, result: Result, ttl: int, report: Reporter,
                     lagging: set[str]) -> None:
    """While waiting: write the value again at a lagging provider whose API no longer has
    it (dropped behind the controller's back: an operator, a zone reload, another tool
    that rewrote the RRset). A provider whose API still has it is only slow to serve it,
    and is left alone; one that cannot be reached now is looked at again later."""
    zone, value = result.target.zone, result.values[0]
    async with zone_lease(rt, zone.name):
        again = await change_txt(rt, zone, result.target.name,
                                 functools.partial(_add, value=value), ttl, sorted(lagging))
        if not again.changed:
            return
        for provider in again.changed:  # removed again if the wait fails in the end
            if provider not in result.change.changed + result.change.unchanged:
                result.change.changed.append(provider)
        _record(rt, Result(result.target, "publish", [value], again), "republished",
                f"{value} was gone from the API of {', '.join(again.changed)} while waiting "
                "for it to be served; written again")
    report(f"{result.target.name.to_text()}: {value} had been dropped at "
           f"{', '.join(again.changed)} (its API no longer held it); written again")


def _add(records: list[str], *, value: str) -> list[str] | None:
    return with_value(records, value)


async def _undo(rt: Runtime, result: Result, value: str) -> Change:
    """Remove ``value`` where this publish added it (a provider that held it before
    keeps it: another order may be using it)."""
    if not result.change.changed:
        return Change()
    return await change_txt(rt, result.target.zone, result.target.name,
                            lambda records: without_values(records, [value]), DEFAULT_TTL,
                            result.change.changed)


def _undone(result: Result, undo: Change) -> str:
    if undo.failed:
        return ("removing it again failed at " + "; ".join(
            f"{p}: {e}" for p, e in sorted(undo.failed.items()))
            + " -- run 'multisigner acme cleanup' once they are back")
    where = ", ".join(result.change.changed) or "nowhere"
    return f"the value was removed again where it had been written ({where})"


def _failure(result: Result, undo: Change) -> str:
    failed = "; ".join(f"{e}" for _, e in sorted(result.change.failed.items()))
    return (f"publishing at {result.target.describe()} failed at "
            f"{', '.join(sorted(result.change.failed))}: {failed}; {_undone(result, undo)}")


async def cleanup(rt: Runtime, fqdn: str, value: str | None, *, report: Reporter,
                  resolver: str | None = None, label: str | None = CHALLENGE_LABEL
                  ) -> Result:
    """Remove ``value`` (or every DNS-01 value) for ``fqdn`` at every signer."""
    if value is not None:
        value = check_digest(value)
    target = await locate(rt, fqdn, label, resolver=resolver)
    zone = target.zone
    signers = check_writable(rt, zone)
    removed: set[str] = set()

    def drop(records: list[str]) -> list[str] | None:
        gone = [value] if value is not None else challenge_values(records)
        removed.update(v for v in gone if v is not None)
        return without_values(records, [v for v in gone if v is not None])

    async with zone_lease(rt, zone.name):
        change = await change_txt(rt, zone, target.name, drop, DEFAULT_TTL, signers)
        result = Result(target, "cleanup", sorted(removed), change)
        if not change.ok:
            _record(rt, result, "cleanup-failed", "a provider failed")
            raise PublishFailed(
                f"cleanup at {target.describe()} failed at " + "; ".join(
                    f"{e}" for _, e in sorted(change.failed.items()))
                + f"; removed at {', '.join(change.changed) or 'none'}: run it again "
                "once the provider is back")
        _record(rt, result, "cleaned", f"removed {', '.join(sorted(removed)) or 'nothing'} "
                f"at {target.describe()}")
    report(f"{target.name.to_text()}: removed {len(removed)} value(s) at "
           f"{len(change.changed)} provider(s)")
    return result
