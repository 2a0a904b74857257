"""The process engine: runs a runbook for one zone, one persisted phase at a time.

Each runbook step goes through four phases, each a persisted state ``<step>:<phase>``:

- ``act``: the intent is on record; change the signer's own keys (create/activate/
  deactivate/delete). Re-running it after a crash is safe: a successor created but not yet
  recorded is *adopted*, not created again.
- ``converge``: bring every provider's foreign DNSKEYs and CDS/CDNSKEY to the step's target
  (the sync planner with the step's overrides). Idempotent by construction.
- ``observe``: poll every nameserver (and the parent) until the step's observations hold;
  past the timeout the process is marked stalled (loudly, once) and keeps waiting; it
  never advances on unverified state.
- ``hold``: the RFC 7583 wait, a persisted deadline computed from observed TTLs.

Every transition is written before the next action (intent) and after it (outcome), with
the evidence seen, so a restart resumes exactly where the process stood.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.config import ZoneConfig
from core.errors import MultisignerError, Refused, UsageError
from core.keys import Role
from core.observation import ZoneView
from orchestrator.decide import membership
from orchestrator.decide.evidence import ceil_seconds, view_evidence
from orchestrator.decide.invariant import check_zone
from orchestrator.decide.membership import CSYNC_RECORD, Member
from orchestrator.decide.owner_signing import resign_due
from orchestrator.decide.rollover import (
    Rolled,
    adoptable,
    key_ops,
    overrides,
    pick_old,
    precondition_problems,
    start_problems,
    unmet,
)
from orchestrator.decide.sync_plan import PlanInput, SyncPlan, interlocks, plan_sync
from orchestrator.decide.timing import deadline, measure
from orchestrator.engine.owner_steps import OWNER, Model1Steps
from orchestrator.engine.owner_steps import unmet as model1_unmet
from orchestrator.engine.runtime import Runtime, holder_id
from orchestrator.engine.sync import apply_actions
from orchestrator.engine.waiting import Reporter
from orchestrator.observe.observer import last_owned, observe
from orchestrator.reports import content_findings
from providers.base import Capability
from runbooks import Runbook, Step, runbook
from state.info import ProcessInfo

LEASE_SECONDS = 120
KINDS: dict[str, str] = {"zsk": "zsk-rollover", "ksk": "ksk-rollover", "csk": "csk-rollover"}


@dataclass
class Outcome:
    """Where a process stands after ``advance``."""

    process_id: str
    state: str
    finished: bool
    waiting_for: str | None = None
    next_check_at: datetime | None = None
    moved: list[str] = field(default_factory=list)


PARENT_POLL_CAP = 60.0  # seconds between polls of a long parent wait


def _now() -> datetime:
    return datetime.now(UTC)


def _poll_delay(since: datetime, now: datetime, *, parent: bool = False) -> float:
    """Poll fast right after a change (most are live within a second), then back off.

    A wait for the parent alone backs off further, to a tenth of the time waited so far
    (at most a minute): a registry takes minutes to hours, and every poll re-reads every
    provider API and nameserver. The DS is then seen at most ~10 % (or a minute) late."""
    elapsed = max(0.0, (now - since).total_seconds())
    delay = min(2.0, 0.1 + 0.1 * elapsed)
    return min(PARENT_POLL_CAP, max(delay, 0.1 * elapsed)) if parent else delay


def _state(step: Step, phase: str, path: str) -> str:
    return f"{step.id}:{phase}" if path == "main" else f"abort:{step.id}:{phase}"


class Engine:
    def __init__(self, rt: Runtime, report: Reporter) -> None:
        self.rt = rt
        self.report = report

    # -- starting and aborting ----------------------------------------------------------

    async def start_rollover(self, zone: ZoneConfig, key_role: Role, signer: str | None,
                             reason: str = "rollover requested") -> ProcessInfo:
        """Check everything, then record the process — under the zone's lease, so a zone
        another controller is working on gets no process at all."""
        with self.rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
            return await self._start_rollover(zone, key_role, signer, reason)

    async def _start_rollover(self, zone: ZoneConfig, key_role: Role, signer: str | None,
                              reason: str) -> ProcessInfo:
        if zone.model == 1:
            return await self._start_model1(zone, key_role, signer, reason)
        if signer is None:
            raise UsageError(f"{zone.name} is a model 2 zone: --signer NAME is required "
                             f"(signers: {', '.join(self.rt.signers(zone))})")
        if signer not in self.rt.signers(zone):
            raise UsageError(f"{signer!r} is not a signer of {zone.name} "
                             f"(signers: {', '.join(self.rt.signers(zone))})")
        if not self.rt.provider(signer).can(Capability.GENERATE_KEYS):
            raise Refused(f"{signer} cannot generate keys on request; it must roll its own keys")
        running = self.rt.store.active_process(zone.name)
        if running is not None:
            raise Refused(f"{zone.name} already has a running {running.kind} process "
                          f"{running.id} (state {running.state}); finish it ('multisigner step "
                          f"{zone.name}') or abort it ('multisigner rollover {zone.name} --abort')")
        kind = KINDS[key_role]
        book = runbook(kind, zone.model)
        view = await self._observe_api(zone)
        data = self._plan_input(zone, view)
        problems = start_problems(data, check_zone(view, _now(),
                                                   expect_identical=zone.policy.import_ksks))
        old, why = pick_old(view.api[signer], key_role)
        if why:
            problems.append(why)
        if problems or old is None:
            raise Refused(f"{zone.name}: refusing to start a {kind} at {signer}; nothing was "
                          "changed", problems)
        rolled = Rolled(signer=signer, role=key_role, old=old.key, old_id=old.key_id,
                        existing_ids=tuple(k.key_id for k in view.api[signer].own_keys))
        first = book.steps[0]
        proc = self.rt.store.start_process(
            zone.name, kind, signer=signer, actor=self.rt.actor, reason=reason,
            state=_state(first, "act", "main"),
            data={"rolled": rolled.as_data(), "path": "main", "index": 0},
            evidence={"observed": view_evidence(view), "ttls": measure(view).as_json(),
                      "old_key": old.key.key_tag},
            waiting_for=f"{first.title}", next_check_at=_now())
        self.report(f"{zone.name}: started {kind} {proc.id[:8]} at {signer}: replacing "
                    f"{key_role.upper()} {old.key.key_tag}")
        return proc

    async def _start_model1(self, zone: ZoneConfig, key_role: Role, signer: str | None,
                            reason: str) -> ProcessInfo:
        running = self.rt.store.active_process(zone.name)
        if running is not None:
            raise Refused(f"{zone.name} already has a running {running.kind} process "
                          f"{running.id} (state {running.state}); finish or abort it first")
        if key_role == "zsk" and signer is not None and signer in self.rt.signers(zone) and \
                not self.rt.provider(signer).can(Capability.GENERATE_KEYS):
            raise Refused(f"{signer} cannot generate keys on request")
        view = await self._observe_api(zone)
        rolled, problems = await Model1Steps(self.rt, zone).start(key_role, signer, view)
        kind = KINDS[key_role]
        if problems:
            raise Refused(f"{zone.name}: refusing to start a {kind}; nothing was changed",
                          problems)
        first = runbook(kind, 1).steps[0]
        proc = self.rt.store.start_process(
            zone.name, kind, signer=rolled.signer, actor=self.rt.actor, reason=reason,
            state=_state(first, "act", "main"),
            data={"rolled": rolled.as_data(), "path": "main", "index": 0, "model": 1},
            evidence={"observed": view_evidence(view), "ttls": measure(view).as_json(),
                      "old_key": rolled.old.key_tag},
            waiting_for=first.title, next_check_at=_now())
        self.report(f"{zone.name}: started {kind} {proc.id[:8]} ({rolled.signer}): replacing "
                    f"{key_role.upper()} {rolled.old.key_tag}")
        return proc

    async def start_signer(self, zone: ZoneConfig, provider: str, direction: str) -> ProcessInfo:
        """Start a signer-add or signer-remove process after checking everything first."""
        with self.rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
            return await self._start_signer(zone, provider, direction)

    async def _start_signer(self, zone: ZoneConfig, provider: str,
                            direction: str) -> ProcessInfo:
        kind = f"signer-{direction}"
        known = [p.name for p in self.rt.config.providers]
        if provider not in known:
            raise UsageError(f"no provider named {provider!r} in the config "
                             f"(configured: {', '.join(known)})")
        running = self.rt.store.active_process(zone.name)
        if running is not None:
            raise Refused(f"{zone.name} already has a running {running.kind} process "
                          f"{running.id} (state {running.state}); finish or abort it first")
        members = self.rt.signers(zone)
        problems = membership.start_problems(direction, provider, members)  # type: ignore[arg-type]
        if problems:
            raise Refused(f"{zone.name}: refusing to {direction} signer {provider}; nothing "
                          "was changed", problems)
        everyone = members + ([provider] if direction == "add" else [])
        for name in everyone:
            caps = self.rt.provider(name)
            need = (Capability.SIGN_EXTERNAL_DNSKEY_SET | Capability.MANAGE_NS
                    if zone.model == 1 else
                    Capability.IMPORT_FOREIGN_DNSKEY | Capability.PUBLISH_CDS
                    | Capability.MANAGE_NS)
            if need not in caps.capabilities:
                raise Refused(f"{name} ({caps.type_name}) lacks what a model {zone.model} "
                              f"signer change needs ({need}); it cannot take part")
        view, errors = await observe(self.rt, zone, signers=everyone)
        if errors:
            raise Refused(f"{zone.name}: refusing to {direction} signer {provider}; nothing "
                          "was changed", [str(e) for e in errors.values()])
        if zone.model == 1:
            steady = Model1Steps(self.rt, zone).member_start_problems(view, provider,
                                                                      direction, members)
        elif direction == "add":
            # The joining signer is not in sync yet by definition; check the others, and
            # the joiner against the interlocks (serves the zone, signed, same algorithm).
            current = dataclasses.replace(view, servers=tuple(
                s for s in view.servers if s.provider != provider))
            data = self._plan_input(zone, current, None, None)
            data.api = {k: v for k, v in view.api.items() if k != provider}
            data.signers = members
            findings = check_zone(view, _now(), expect_identical=zone.policy.import_ksks)
            if provider in view.reachable():
                findings = [f for f in findings if f.provider != provider]
            steady = start_problems(data, findings)
            joined = self._plan_input(zone, view, None, None)
            joined.signers = everyone
            steady += [f"[{r.code}] {r.message}" for r in interlocks(joined)
                       if r.code != "DNSKEY_NOT_VALIDATABLE" or provider in r.message]
            steady += [f"[{f.code}] {f.message}: bring {provider}'s zone data in line first"
                       for f in await content_findings(self.rt, zone, everyone)]
        else:
            steady = start_problems(self._plan_input(zone, view, None, None),
                                    check_zone(view, _now(),
                                               expect_identical=zone.policy.import_ksks))
            step = runbook(kind, zone.model).steps[0]
            steady += membership.precondition_problems(step, Member(provider, "remove"),
                                                       members, view)
        if steady:
            raise Refused(f"{zone.name}: refusing to {direction} signer {provider}; nothing "
                          "was changed", sorted(set(steady)))
        first = runbook(kind, zone.model).steps[0]
        proc = self.rt.store.start_process(
            zone.name, kind, signer=provider, actor=self.rt.actor,
            reason=f"signer {direction} requested", state=_state(first, "act", "main"),
            data={"member": Member(provider, direction).as_data(),  # type: ignore[arg-type]
                  "path": "main", "index": 0},
            evidence={"observed": view_evidence(view), "signers_before": members},
            waiting_for=first.title, next_check_at=_now(),
            member=(provider, "joining" if direction == "add" else "leaving"))
        self.report(f"{zone.name}: started {kind} {proc.id[:8]} for {provider}")
        return proc

    def abort(self, zone: ZoneConfig) -> ProcessInfo:
        with self.rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
            return self._abort(zone)

    def _abort(self, zone: ZoneConfig) -> ProcessInfo:
        store = self.rt.store
        proc = store.active_process(zone.name)
        if proc is None:
            raise UsageError(f"{zone.name} has no running process to abort")
        if proc.kind == "sync":
            return store.transition(proc.id, "aborted", actor=self.rt.actor,
                                    reason="abort requested (sync re-plans from observation)",
                                    status="aborted")
        data = dict(proc.data)
        if data.get("path") != "main":
            raise Refused(f"{zone.name}: process {proc.id} is already aborting "
                          f"(state {proc.state}); let it finish")
        book = runbook(proc.kind, zone.model)
        step = book.steps[data["index"]]
        path = book.abort_path(step.id)
        if not path:
            why = ("the delegation is changing; finish, then run the opposite signer process "
                   "('multisigner signer add|remove')" if "member" in data else
                   "the predecessor is being withdrawn and the zone is safe only going "
                   "forward; let the process finish")
            raise Refused(f"{zone.name}: cannot abort in step {step.id!r} ({step.title}): {why}")
        data.update(path="abort", abort_ids=[a.id for a in path], index=0)
        return store.transition(
            proc.id, _state(path[0], "act", "abort"), actor=self.rt.actor,
            reason=f"abort requested in {proc.state}: {path[0].title}", data=data,
            evidence={"abort_path": [a.id for a in path]}, next_check_at=_now(),
            waiting_for=path[0].title)

    # -- advancing ------------------------------------------------------------------------

    async def advance(self, zone: ZoneConfig, process_id: str) -> Outcome:
        """Move the process forward until it has to wait (or is finished)."""
        with self.rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
            moved: list[str] = []
            while True:
                outcome = await self._one(zone, process_id)
                if outcome.moved:
                    moved += outcome.moved
                    continue
                outcome.moved = moved
                return outcome

    async def refresh_model1(self, zone: ZoneConfig, process_id: str) -> bool:
        """Model 1: while a process waits (observe/hold), the owner's signatures over the
        step's key set must not run out: re-sign and re-deliver that same set when due. A
        slow parent (days for a DS change) would otherwise outlast signature_validity."""
        with self.rt.store.lease(zone.name, holder_id(), LEASE_SECONDS):
            proc = self.rt.store.get_process(process_id)
            if proc is None or proc.status != "running":
                return False
            if proc.state.rsplit(":", 1)[1] not in ("observe", "hold"):
                return False  # act/converge deliver anyway, in a moment
            data = dict(proc.data)
            book = runbook(proc.kind, zone.model)
            ids = [s.id for s in book.steps] if data["path"] == "main" else data["abort_ids"]
            step = book.step(ids[data["index"]])
            view = await self._observe_api(zone)
            steps1 = Model1Steps(self.rt, zone)
            target = steps1.target_for(step, data, view)
            due = resign_due(view, target.signing, _now(), zone.policy.signature_refresh)
            if not due:
                return False
            done, _ = await steps1.converge_for(step, data, view)
            self.rt.store.append_history(
                zone.name, process_id=proc.id, kind=proc.kind, from_state=proc.state,
                to_state=proc.state, actor=self.rt.actor,
                reason="re-signed the current key set: signatures were due at " + ", ".join(due),
                evidence={"changes": done, "target": target.as_json()})
            self.report(f"{zone.name}: re-signed the key set of {proc.state} ({'; '.join(done)})")
            return True

    async def _one(self, zone: ZoneConfig, process_id: str) -> Outcome:
        store = self.rt.store
        proc = store.get_process(process_id)
        if proc is None:
            raise UsageError(f"no process {process_id}")
        if proc.status != "running":
            return Outcome(proc.id, proc.state, True)
        book = runbook(proc.kind, zone.model)
        data = dict(proc.data)
        ids = [s.id for s in book.steps] if data["path"] == "main" else data["abort_ids"]
        step = book.step(ids[data["index"]])
        phase = proc.state.rsplit(":", 1)[1]
        if phase == "act":
            return await self._act(zone, proc, step, data)
        if phase == "converge":
            return await self._converge(zone, proc, step, data)
        if phase == "observe":
            return await self._observe(zone, proc, step, data)
        return self._hold(zone, proc, book, ids, step, data)

    async def _observe_api(self, zone: ZoneConfig, *, csync: bool = False) -> ZoneView:
        view, errors = await observe(self.rt, zone, csync=csync)
        if errors:
            raise Refused(f"{zone.name}: {len(errors)} provider API(s) failed; the process "
                          "stays where it is and retries", [str(e) for e in errors.values()])
        return view

    def _plan_input(self, zone: ZoneConfig, view: ZoneView, step: Step | None = None,
                    data: dict[str, Any] | None = None) -> PlanInput:
        signers = self.rt.signers(zone)
        exclude: frozenset[Any] = frozenset()
        remove: frozenset[Any] = frozenset()
        if step is not None and data is not None and "rolled" in data:
            exclude, remove = overrides(step, Rolled.from_data(data["rolled"]))
        elif step is not None and data is not None and "member" in data:
            member = Member.from_data(data["member"])
            signers = membership.key_signers(step, member, signers)
            exclude, remove = membership.overrides(step, member, view.api)
        return PlanInput(zone=zone.name, signers=signers, policy=zone.policy,
                         api=view.api, view=view, now=_now(),
                         last_owned=last_owned(self.rt, zone.name),
                         cds_exclude=exclude, force_remove=remove)

    def _ns_target(self, zone: ZoneConfig, step: Step, data: dict[str, Any]) -> Any:
        if "member" not in data:
            return None
        names = {p.name: list(p.ns_names) for p in self.rt.config.providers}
        return membership.ns_target(step, Member.from_data(data["member"]),
                                    self.rt.signers(zone), names)

    async def _act(self, zone: ZoneConfig, proc: ProcessInfo, step: Step,
                   data: dict[str, Any]) -> Outcome:
        if "member" in data:
            return await self._act_member(zone, proc, step, data)
        rolled = Rolled.from_data(data["rolled"])
        view = await self._observe_api(zone)
        problems = precondition_problems(step, rolled, view)
        if problems:
            return self._wait(proc, data, "precondition: " + "; ".join(problems), zone)
        if zone.model == 1 and rolled.signer == OWNER:
            rolled, made = Model1Steps(self.rt, zone).owner_act(step, rolled)
            return self._to_converge(proc, step, data, rolled, made)
        state = view.api[rolled.signer]
        if rolled.new is None and step.keys.get("new") is not None:
            found = adoptable(state, rolled)
            if found is not None:
                rolled = dataclasses.replace(rolled, new=found.key, new_id=found.key_id)
                self.report(f"{zone.name}: adopting successor {found.key.key_tag} created by "
                            "an interrupted attempt")
        provider = self.rt.provider(rolled.signer)
        done: list[str] = []
        for op in key_ops(step, rolled, state):
            if op.kind == "create":
                created = await provider.create_key(zone.name, rolled.role,
                                                    zone.policy.algorithm, active=op.active,
                                                    published=True)
                rolled = dataclasses.replace(rolled, new=created.key, new_id=created.key_id)
            elif op.kind == "set":
                assert op.key_id is not None
                await provider.set_key_state(zone.name, op.key_id, active=op.active,
                                             published=True)
            else:
                assert op.key_id is not None
                await provider.delete_key(zone.name, op.key_id)
            done.append(op.describe(rolled))
        return self._to_converge(proc, step, data, rolled, done)

    def _to_converge(self, proc: ProcessInfo, step: Step, data: dict[str, Any],
                     rolled: Rolled, done: list[str]) -> Outcome:
        data["rolled"] = rolled.as_data()
        new_state = proc.state.rsplit(":", 1)[0] + ":converge"
        self.rt.store.transition(proc.id, new_state, actor=self.rt.actor,
                                 reason=f"{step.title}: keys at {rolled.signer}",
                                 evidence={"key_ops": done}, data=data, next_check_at=_now(),
                                 waiting_for="every provider brought to the step's target")
        return Outcome(proc.id, new_state, False, moved=[new_state])

    async def _act_member(self, zone: ZoneConfig, proc: ProcessInfo, step: Step,
                          data: dict[str, Any]) -> Outcome:
        member = Member.from_data(data["member"])
        view = await self._observe_api(zone)
        members = self.rt.signers(zone)
        problems = membership.precondition_problems(step, member, members, view)
        if "content-matches" in step.precondition:
            everyone = sorted({*members, member.provider})
            problems += [f"[{f.code}] {f.message}: bring {member.provider}'s zone data in "
                         "line" for f in await content_findings(self.rt, zone, everyone)]
        if problems:
            return self._wait(proc, data, "precondition: " + "; ".join(problems), zone)
        new_state = proc.state.rsplit(":", 1)[0] + ":converge"
        self.rt.store.transition(proc.id, new_state, actor=self.rt.actor,
                                 reason=f"{step.title}: preconditions hold",
                                 evidence={"observed": view_evidence(view)}, data=data,
                                 next_check_at=_now(),
                                 waiting_for="every provider brought to the step's target")
        return Outcome(proc.id, new_state, False, moved=[new_state])

    async def _converge(self, zone: ZoneConfig, proc: ProcessInfo, step: Step,
                        data: dict[str, Any]) -> Outcome:
        view = await self._observe_api(zone)
        if zone.model == 1:
            changes, target1 = await Model1Steps(self.rt, zone).converge_for(step, data, view)
            changes += await self._converge_ns(zone, step, data, view)
            target: dict[str, Any] = target1.as_json()
        else:
            plan = plan_sync(self._plan_input(zone, view, step, data))
            await apply_actions(self.rt, zone.name, plan.actions)
            changes = [a.describe() for a in plan.actions]
            changes += await self._converge_ns(zone, step, data, view)
            target = plan.as_json()
        now = _now()
        data["observe_since"] = now.isoformat()
        data.pop("stalled", None)
        new_state = proc.state.rsplit(":", 1)[0] + ":observe"
        self.rt.store.transition(
            proc.id, new_state, actor=self.rt.actor,
            reason=f"{step.title}: {len(changes)} provider change(s) applied",
            evidence={"changes": changes, "target": target},
            data=data, next_check_at=now, waiting_for=", ".join(step.observe) or "nothing")
        return Outcome(proc.id, new_state, False, moved=[new_state])

    async def _converge_ns(self, zone: ZoneConfig, step: Step, data: dict[str, Any],
                           view: ZoneView) -> list[str]:
        """Signer add/remove: the NS and CSYNC RRsets at every signer (read before write)."""
        ns = self._ns_target(zone, step, data)
        out: list[str] = []
        for name in self.rt.signers(zone):
            state = view.api[name]
            provider = self.rt.provider(name)
            ttl = next((s.ns.ttl for s in view.of(name) if s.ns), None) or 3600
            if ns is not None and state.ns != ns:
                await provider.set_apex_rrset(zone.name, "NS", sorted(ns), ttl)
                out.append(f"{name}: NS = {', '.join(sorted(ns))}")
            if step.csync is not None:
                want = {CSYNC_RECORD} if step.csync else set()
                if set(state.csync) != want:
                    await provider.set_apex_rrset(zone.name, "CSYNC", sorted(want), ttl)
                    out.append(f"{name}: CSYNC {'published' if want else 'removed'}")
        return out

    async def _observe(self, zone: ZoneConfig, proc: ProcessInfo, step: Step,
                       data: dict[str, Any]) -> Outcome:
        view = await self._observe_api(zone, csync="member" in data)
        if zone.model == 1:
            steps1 = Model1Steps(self.rt, zone)
            target = steps1.target_for(step, data, view)
            mine = dataclasses.replace(view, servers=tuple(
                s for s in view.servers if s.provider in target.zsks))
            if resign_due(mine, target.signing, _now(), zone.policy.signature_refresh):
                # Waiting for the parent can outlast the signatures: keep them fresh.
                self.report(f"{zone.name}: re-signing the key set while waiting")
                await steps1.converge_for(step, data, view)  # evidence: next transition
            rolled = Rolled.from_data(data["rolled"]) if "rolled" in data else None
            missing = model1_unmet(step, rolled, target, view)
            if "member" in data:
                rest = step.model_copy(update={"observe": [o for o in step.observe
                                                           if o != "served"]})
                empty = SyncPlan(zone.name, (), (), {}, frozenset(), frozenset())
                missing += membership.unmet(rest, Member.from_data(data["member"]), empty,
                                            view, self._ns_target(zone, step, data))
            return self._observed(zone, proc, step, data, view, missing)
        plan = plan_sync(self._plan_input(zone, view, step, data))
        if not plan.empty:
            # The API no longer shows what converge set (someone edited it, or the provider
            # dropped it): apply again; observation below decides whether it is live.
            self.report(f"{zone.name}: re-applying {len(plan.actions)} change(s) the provider "
                        "APIs do not show")
            await apply_actions(self.rt, zone.name, plan.actions)
        if "member" in data:
            missing = membership.unmet(step, Member.from_data(data["member"]), plan, view,
                                       self._ns_target(zone, step, data))
        else:
            missing = unmet(step, Rolled.from_data(data["rolled"]), plan, view)
        return self._observed(zone, proc, step, data, view, missing)

    def _observed(self, zone: ZoneConfig, proc: ProcessInfo, step: Step,
                  data: dict[str, Any], view: ZoneView, missing: list[str]) -> Outcome:
        if missing:
            at_parent = ["parent" in step.observe and m.startswith("parent") for m in missing]
            return self._wait(proc, data, "; ".join(missing), zone, parent=any(at_parent),
                              parent_only=all(at_parent))
        now = _now()
        ttls = measure(view)
        until = deadline(now, list(step.hold), step.hold_combine, ttls, zone.policy)
        data["observed_at"] = now.isoformat()
        data["deadline"] = until.isoformat()
        data.pop("stalled", None)
        joined = (" + " if step.hold_combine == "sum" else ", ").join(step.hold)
        terms = "" if not step.hold else (
            f" {joined}" if step.hold_combine == "sum" else f" max({joined})")
        new_state = proc.state.rsplit(":", 1)[0] + ":hold"
        self.rt.store.transition(
            proc.id, new_state, actor=self.rt.actor,
            reason=f"{step.title}: observed on every nameserver",
            evidence={"observed": view_evidence(view), "ttls": ttls.as_json(),
                      "hold": list(step.hold), "hold_combine": step.hold_combine,
                      "propagation_delay_s": zone.policy.propagation_delay.total_seconds(),
                      "safety_margin_s": zone.policy.safety_margin.total_seconds(),
                      "observed_at": now.isoformat(), "deadline": until.isoformat(),
                      "observed_after_s": round((now - datetime.fromisoformat(
                          data["observe_since"])).total_seconds(), 3)},
            data=data, next_check_at=until,
            waiting_for=f"hold{terms} until {ceil_seconds(until)}")
        return Outcome(proc.id, new_state, False, moved=[new_state])

    def _hold(self, zone: ZoneConfig, proc: ProcessInfo, book: Runbook, ids: list[str],
              step: Step, data: dict[str, Any]) -> Outcome:
        until = datetime.fromisoformat(data["deadline"])
        now = _now()
        if now < until:
            return Outcome(proc.id, proc.state, False, proc.waiting_for, until)
        index = data["index"] + 1
        store = self.rt.store
        if index >= len(ids):
            final = "done" if data["path"] == "main" else "aborted"
            change: tuple[str, str | None] | None = None
            if "member" in data:
                member = Member.from_data(data["member"])
                keep = (final == "done") == (member.direction == "add")
                change = (member.provider, "active" if keep else None)
            store.transition(proc.id, final, actor=self.rt.actor,
                             reason=f"{step.title}: complete", status=final,
                             evidence={"late_s": round((now - until).total_seconds(), 3)},
                             member=change)
            self.report(f"{zone.name}: {proc.kind} {proc.id[:8]} {final}")
            return Outcome(proc.id, final, True, moved=[final])
        data["index"] = index
        nxt = book.step(ids[index])
        new_state = _state(nxt, "act", data["path"])
        store.transition(proc.id, new_state, actor=self.rt.actor,
                         reason=f"{step.title}: hold over; next: {nxt.title}", data=data,
                         evidence={"late_s": round((now - until).total_seconds(), 3)},
                         next_check_at=now, waiting_for=nxt.title)
        return Outcome(proc.id, new_state, False, moved=[new_state])

    def _wait(self, proc: ProcessInfo, data: dict[str, Any], what: str, zone: ZoneConfig,
              parent: bool = False, parent_only: bool = False) -> Outcome:
        now = _now()
        since = datetime.fromisoformat(data.get("observe_since") or now.isoformat())
        limit = zone.policy.parent_timeout if parent else zone.policy.propagation_timeout
        nxt = now + timedelta(seconds=_poll_delay(since, now, parent=parent_only))
        if now - since > limit and not data.get("stalled"):
            # Loud, once: the history shows the stall; the process keeps waiting, never
            # advancing on state it could not observe.
            data["stalled"] = now.isoformat()
            self.rt.store.transition(
                proc.id, proc.state, actor=self.rt.actor,
                reason=f"STALLED after {limit}: still waiting for {what}",
                data=data, next_check_at=nxt, waiting_for=f"STALLED: {what}")
            self.report(f"{zone.name}: STALLED: {proc.kind} {proc.id[:8]} in {proc.state} "
                        f"still waiting for {what}; investigate, or abort with 'multisigner "
                        f"rollover {zone.name} --abort'")
        else:
            self.rt.store.set_wait(proc.id, waiting_for=("STALLED: " if data.get("stalled")
                                                         else "") + what, next_check_at=nxt)
        shown = f"STALLED: {what}" if data.get("stalled") else what
        return Outcome(proc.id, proc.state, False, shown, nxt)


def describe_plan(plan: SyncPlan) -> str:
    return "; ".join(a.describe() for a in plan.actions) or "no provider changes"


__all__ = ["Engine", "MultisignerError", "Outcome"]
