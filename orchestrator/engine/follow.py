"""Following provider-initiated rollovers (Model 2): the daemon's look at an idle zone.

A zone one of whose signers rolls its own keys (no key-generation API: Knot by DNS UPDATE,
deSEC, Cloudflare) drifts from its steady state whenever that signer publishes a successor
or drops a retired key. On every scan the daemon observes such a zone (every signer's
API and nameservers; not the parent, whose DS changes only with a KSK and is then waited
for by the process) and, when the Model 2 plan is not empty, starts a ``follow`` process
(``runbooks/follow-model2.toml``): the same engine, converger and history as any other
process, so every import and withdrawal is recorded with the reason that started it.

The plan imports a signer's pre-published successor at every other provider (see
``orchestrator.decide.follow`` for how it is told apart from a foreign key) and withdraws
a key no signer holds any more only once no signature made with it can still be cached.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.config import ZoneConfig
from core.observation import ApiZoneState
from orchestrator.decide import follow
from orchestrator.decide.evidence import view_evidence
from orchestrator.engine.lease import zone_lease
from orchestrator.engine.runner import Engine
from orchestrator.observe.observer import observe
from orchestrator.runtime import LEASE_SECONDS, Runtime
from providers.base import Capability
from state.info import ProcessInfo

KIND = "follow"


def self_rolling(rt: Runtime, zone: ZoneConfig) -> list[str]:
    """The zone's signers that roll their own keys on their own schedule."""
    return [s for s in rt.signers(zone)
            if not rt.provider(s).can(Capability.GENERATE_KEYS)]


def window_of(rt: Runtime, signer: str) -> timedelta | None:
    """The signer's configured pre-publication window, if its config has one."""
    window = getattr(rt.config.provider(signer), "prepublish_window", None)
    return window if isinstance(window, timedelta) else None


def reason_of(plan: dict[str, Any]) -> str:
    """The history's reason for a follow: what each provider gets (+) or loses (-)."""
    changes = []
    for action in plan.get("actions", []):
        what = "" if action["kind"] == "set-dnskeys" else "CDS "
        parts = [f"+{k}" for k in action["add"]] + [f"-{k}" for k in action["remove"]]
        changes.append(f"{action['provider']} {what}{' '.join(parts)}")
    return "follow: provider key sets changed (" + "; ".join(changes or ["served set lags"]) + ")"


class Follower:
    """Starts follow processes for one daemon; remembers the poll interval the zones'
    windows call for."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.intervals: dict[str, timedelta] = {}  # zone -> poll interval its windows need

    @property
    def interval(self) -> timedelta | None:
        return min(self.intervals.values(), default=None)

    async def look(self, zone: ZoneConfig
                   ) -> tuple[ProcessInfo | None, dict[str, ApiZoneState]]:
        """Observe ``zone``; start a follow process if its key sets are not the target.
        Also returns the API states read (recorded, so key ages count), which the daemon's
        policy rollovers reuse. Refusals (a signer that does not validate, an unreachable
        API) propagate: the daemon logs them and looks again on its next scan."""
        rt = self.engine.rt
        view, errors = await observe(rt, zone, parent=False)
        if errors:
            raise next(iter(errors.values()))
        windows = [w for s in self_rolling(rt, zone) if (w := window_of(rt, s)) is not None]
        ttl_key = max((s.dnskey.ttl for s in view.servers if s.dnskey), default=0)
        wanted = follow.poll_interval(windows, timedelta(seconds=ttl_key),
                                      zone.policy.propagation_delay)
        if wanted is not None:
            self.intervals[zone.name] = wanted
        preview = await self.engine.converger(zone).sync_preview(view, dry_run=True)
        if preview.in_sync:
            return None, view.api
        plan = dict(preview.evidence).get("plan", {})
        reason = reason_of(plan if isinstance(plan, dict) else {})
        async with zone_lease(rt.store, zone.name, LEASE_SECONDS):
            if rt.store.active_process(zone.name) is not None:
                return None, view.api  # another controller started one meanwhile
            proc = self.engine._record(  # the engine's own recorder: same checks, same record
                zone, KIND, None, signer=None, reason=reason,
                evidence={"observed": view_evidence(view), **preview.evidence})
        self.engine.seed(proc, view, False)
        self.engine.report(f"{zone.name}: started {KIND} {proc.id[:8]}: {reason}")
        return proc, view.api


__all__ = ["KIND", "Follower", "self_rolling"]
