"""Starting and aborting processes: check everything first, then record the process —
under the zone's lease, so a zone another controller works on gets no process at all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.config import ZoneConfig
from core.errors import Refused, UsageError
from core.keys import Role
from core.observation import ZoneView
from orchestrator.decide import membership
from orchestrator.decide.evidence import view_evidence
from orchestrator.decide.membership import Member
from orchestrator.decide.process_data import Payload, ProcessData
from orchestrator.decide.timing import measure
from orchestrator.engine.lease import zone_lease
from orchestrator.observe.observer import observe
from orchestrator.runtime import LEASE_SECONDS, Reporter, Runtime, holder_id
from providers.base import Capability
from runbooks import runbook
from state.info import ProcessInfo

if TYPE_CHECKING:
    from orchestrator.engine.converge import Converger

KINDS: dict[str, str] = {"zsk": "zsk-rollover", "ksk": "ksk-rollover", "csk": "csk-rollover"}


def _now() -> datetime:
    return datetime.now(UTC)


class ProcessStarts:
    """The starting half of the engine (mixed into ``Engine``)."""

    rt: Runtime
    report: Reporter

    def converger(self, zone: ZoneConfig, signers: list[str] | None = None,
                  extra: Capability = Capability.NONE) -> Converger:
        raise NotImplementedError  # the engine's

    async def _observe_api(self, zone: ZoneConfig, *, csync: bool = False) -> ZoneView:
        raise NotImplementedError  # the engine's

    def _refuse_busy(self, zone: ZoneConfig) -> None:
        running = self.rt.store.active_process(zone.name)
        if running is not None:
            raise Refused(f"{zone.name} already has a running {running.kind} process "
                          f"{running.id} (state {running.state}); finish it ('multisigner step "
                          f"{zone.name}') or abort it ('multisigner rollover {zone.name} "
                          "--abort')")

    def _record(self, zone: ZoneConfig, kind: str, payload: Payload, *, signer: str | None,
                reason: str, evidence: dict[str, Any],
                member: tuple[str, str] | None = None) -> ProcessInfo:
        first = runbook(kind, zone.model).steps[0]
        return self.rt.store.start_process(
            zone.name, kind, signer=signer, actor=self.rt.actor, reason=reason,
            state=f"{first.id}:act", data=ProcessData(payload=payload).as_json(),
            evidence=evidence, waiting_for=first.title, next_check_at=_now(), member=member)

    async def start_rollover(self, zone: ZoneConfig, key_role: Role, signer: str | None,
                             reason: str = "rollover requested") -> ProcessInfo:
        async with zone_lease(self.rt.store, zone.name, LEASE_SECONDS):
            conv = self.converger(zone)
            self._refuse_busy(zone)
            kind = KINDS[key_role]
            view = await self._observe_api(zone)
            rolled, problems = await conv.rollover_start(key_role, signer, view)
            if problems:
                where = f" at {signer}" if signer else ""
                raise Refused(f"{zone.name}: refusing to start a {kind}{where}; nothing was "
                              "changed", problems)
            proc = self._record(zone, kind, rolled, signer=rolled.signer, reason=reason,
                                evidence={"observed": view_evidence(view),
                                          "ttls": measure(view).as_json(),
                                          "old_key": rolled.old.key_tag})
            self.report(f"{zone.name}: started {kind} {proc.id[:8]} at {rolled.signer}: "
                        f"replacing {key_role.upper()} {rolled.old.key_tag}")
            return proc

    async def start_signer(self, zone: ZoneConfig, provider: str, direction: str) -> ProcessInfo:
        """Start a signer-add or signer-remove process after checking everything first."""
        async with zone_lease(self.rt.store, zone.name, LEASE_SECONDS):
            kind = f"signer-{direction}"
            known = [p.name for p in self.rt.config.providers]
            if provider not in known:
                raise UsageError(f"no provider named {provider!r} in the config "
                                 f"(configured: {', '.join(known)})")
            self._refuse_busy(zone)
            members = self.rt.signers(zone)
            problems = membership.start_problems(direction, provider,  # type: ignore[arg-type]
                                                 members)
            if problems:
                raise Refused(f"{zone.name}: refusing to {direction} signer {provider}; "
                              "nothing was changed", problems)
            everyone = members + ([provider] if direction == "add" else [])
            conv = self.converger(zone, everyone, Capability.MANAGE_NS)
            view, errors = await observe(self.rt, zone, signers=everyone)
            if errors:
                raise Refused(f"{zone.name}: refusing to {direction} signer {provider}; "
                              "nothing was changed", [str(e) for e in errors.values()])
            steady = await conv.member_start_problems(view, provider, direction, members)
            if steady:
                raise Refused(f"{zone.name}: refusing to {direction} signer {provider}; "
                              "nothing was changed", sorted(set(steady)))
            proc = self._record(
                zone, kind, Member(provider, direction),  # type: ignore[arg-type]
                signer=provider, reason=f"signer {direction} requested",
                evidence={"observed": view_evidence(view), "signers_before": members},
                member=(provider, "joining" if direction == "add" else "leaving"))
            self.report(f"{zone.name}: started {kind} {proc.id[:8]} for {provider}")
            return proc

    def start_sync(self, zone: ZoneConfig, view: ZoneView, evidence: dict[str, Any],
                   reason: str) -> ProcessInfo:
        """Record a sync process (the caller holds the lease and has checked the zone). A
        sync left running by an interrupted run is superseded: sync replans from
        observation, so nothing of it needs finishing."""
        store = self.rt.store
        stale = store.active_process(zone.name)
        if stale is not None:
            if stale.kind != "sync":
                self._refuse_busy(zone)
            store.transition(stale.id, "superseded", actor=self.rt.actor,
                             reason="an interrupted sync; a new sync run replans from "
                             "observation", status="aborted")
        return self._record(zone, "sync", None, signer=None, reason=reason,
                            evidence={"observed": view_evidence(view), **evidence})

    def abort(self, zone: ZoneConfig) -> ProcessInfo:
        with self.rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
            return self._abort(zone)

    def _abort(self, zone: ZoneConfig) -> ProcessInfo:
        store = self.rt.store
        proc = store.active_process(zone.name)
        if proc is None:
            raise UsageError(f"{zone.name} has no running process to abort")
        if proc.kind in ("sync", "follow"):
            return store.transition(proc.id, "aborted", actor=self.rt.actor,
                                    reason=f"abort requested ({proc.kind} re-plans from "
                                    "observation)",
                                    status="aborted")
        data = ProcessData.from_json(dict(proc.data))
        if data.path != "main":
            raise Refused(f"{zone.name}: process {proc.id} is already aborting "
                          f"(state {proc.state}); let it finish")
        book = runbook(proc.kind, zone.model)
        step = book.steps[data.index]
        path = book.abort_path(step.id)
        if not path:
            why = ("the delegation is changing; finish, then run the opposite signer process "
                   "('multisigner signer add|remove')" if data.member is not None else
                   "the parent may already trust the successor SIG(0) key alone; let the "
                   "process finish" if proc.kind == "sig0-rollover" else
                   "the predecessor is being withdrawn and the zone is safe only going "
                   "forward; let the process finish")
            raise Refused(f"{zone.name}: cannot abort in step {step.id!r} ({step.title}): {why}")
        data = data.but(path="abort", abort_ids=tuple(a.id for a in path), index=0)
        return store.transition(
            proc.id, f"abort:{path[0].id}:act", actor=self.rt.actor,
            reason=f"abort requested in {proc.state}: {path[0].title}", data=data.as_json(),
            evidence={"abort_path": [a.id for a in path]}, next_check_at=_now(),
            waiting_for=path[0].title)
