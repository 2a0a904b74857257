"""The process engine: runs a runbook for one zone, one persisted phase at a time.

Every process (sync, rollovers, signer add/remove, in either model) is a runbook of steps,
and each step goes through four phases, each a persisted state ``<step>:<phase>``:

- ``act``: the step's preconditions hold (else it waits); the rolled keys are changed where
  they live (a provider's key API or the owner's key store). Re-running it after a crash is
  safe: a successor created but not yet recorded is *adopted*, not created again.
- ``converge``: every provider is brought to the step's target by the zone's converger
  (``converge.py``: cross-import or owner-signed), and the NS/CSYNC RRsets to the step's.
  Idempotent by construction.
- ``observe``: poll every nameserver (and the parent) until the step's observations hold
  (``orchestrator.decide.checks``); past the timeout the process is marked stalled (loudly,
  once) and keeps waiting; it never advances on unverified state.
- ``hold``: the RFC 7583 wait, a persisted deadline computed from observed TTLs.

A step with no keys, preconditions or hold (every sync step) is persisted in two phases
(``single_pass``); a converge starts from a view read a moment before, if any (``FreshView``).

Every transition is written before the next action (intent) and after it (outcome), with
the evidence seen, so a restart resumes exactly where the process stood.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import dns.rdatatype

from core import events
from core.config import ZoneConfig
from core.errors import Refused, UsageError
from core.observation import ApiZoneState, ZoneView
from orchestrator.decide.checks import (
    NEEDS_CONTENT,
    CheckContext,
    polled_types,
    precondition_problems,
    unmet,
)
from orchestrator.decide.evidence import view_evidence
from orchestrator.decide.goals import Goal
from orchestrator.decide.intent import StepIntent, step_intent
from orchestrator.decide.membership import Member
from orchestrator.decide.process_data import ProcessData
from orchestrator.decide.rollover import adoptable, key_ops
from orchestrator.engine import sig0_steps
from orchestrator.engine.apex import converge_apex
from orchestrator.engine.converge import Converger, converger_for
from orchestrator.engine.lease import zone_lease
from orchestrator.engine.leaving import StepExits
from orchestrator.engine.parent_channel import DsyncChannel
from orchestrator.engine.phase_state import (
    FreshView,
    Outcome,
    ProcessAt,
    StepTarget,
    single_pass,
    state_name,
)
from orchestrator.engine.registrar_channel import Route53DomainsChannel
from orchestrator.engine.starts import ProcessStarts
from orchestrator.observe.observer import observe
from orchestrator.reports import content_findings
from orchestrator.runtime import LEASE_SECONDS, Reporter, Runtime
from providers.base import Capability
from runbooks import Step, runbook
from state.info import ProcessInfo


def _now() -> datetime:
    return datetime.now(UTC)


# How often an observe phase re-reads the providers' APIs (and re-applies what they lost);
# the nameservers are polled on every round.
API_REFRESH_SECONDS = 5.0


class Engine(ProcessStarts, StepExits):
    def __init__(self, rt: Runtime, report: Reporter) -> None:
        self.rt = rt
        self.report = report
        self._convergers: dict[str, Converger] = {}
        self._targets: dict[str, StepTarget] = {}
        self._fresh: dict[str, FreshView] = {}
        self._capable: set[tuple[str, tuple[str, ...], Capability]] = set()
        self._channels: dict[str, DsyncChannel | Route53DomainsChannel] = {}

    def parent_channel(self, zone: ZoneConfig) -> DsyncChannel | Route53DomainsChannel | None:
        """The zone's active parent channel (``dsync``, ``route53domains``), or None: the
        parent scans CDS."""
        if zone.parent.type == "route53domains":
            return self._channels.setdefault(zone.name, Route53DomainsChannel(self.rt, zone))
        if zone.parent.type != "dsync":
            return None
        return self._channels.setdefault(zone.name, DsyncChannel(self.rt, zone))

    def _conv(self, zone: ZoneConfig) -> Converger:
        conv = self._convergers.get(zone.name)
        if conv is None:
            conv = converger_for(self.rt, zone, self.report)
            self._convergers[zone.name] = conv
        return conv

    def converger(self, zone: ZoneConfig, signers: list[str] | None = None,
                  extra: Capability = Capability.NONE) -> Converger:
        """The zone's converger, after checking (once per zone and set of signers) that
        every signer offers what it needs."""
        conv = self._conv(zone)
        names = tuple(signers if signers is not None else self.rt.signers(zone))
        if (zone.name, names, extra) in self._capable:
            return conv  # a provider's capabilities are fixed for the life of its adapter
        need = conv.capability | extra
        for name in names:
            provider = self.rt.provider(name)
            missing = need & ~provider.capabilities
            if missing:
                what = ", ".join(str(c.name).lower().replace("_", " ") for c in missing)
                raise Refused(f"{zone.name}: provider {name} ({provider.type_name}) cannot "
                              f"{what}; it cannot be a signer of a model {zone.model} "
                              f"({conv.kind}) zone")
        self._capable.add((zone.name, names, extra))
        return conv

    # -- advancing ------------------------------------------------------------------------

    async def advance(self, zone: ZoneConfig, process_id: str, *,
                      leased: bool = False) -> Outcome:
        """Move the process forward until it has to wait (or is finished). ``leased``: the
        caller already holds the zone's lease (a foreground sync)."""
        if leased:
            return await self._advance(zone, process_id)
        async with zone_lease(self.rt.store, zone.name, LEASE_SECONDS):
            return await self._advance(zone, process_id)

    async def _advance(self, zone: ZoneConfig, process_id: str) -> Outcome:
        moved: list[str] = []
        while True:
            outcome = await self._one(zone, process_id)
            if outcome.moved:
                moved += outcome.moved
                continue
            outcome.moved = moved
            return outcome

    def _here(self, zone: ZoneConfig, proc: ProcessInfo) -> ProcessAt:
        book = runbook(proc.kind, zone.model)
        data = ProcessData.from_json(dict(proc.data))
        ids = data.step_ids([s.id for s in book.steps])
        return ProcessAt(zone, proc, book, book.step(ids[data.index]), data,
                         tuple(self.rt.signers(zone)))

    async def _one(self, zone: ZoneConfig, process_id: str) -> Outcome:
        proc = self.rt.store.get_process(process_id)
        if proc is None:
            raise UsageError(f"no process {process_id}")
        if proc.status != "running":
            return Outcome(proc.id, proc.state, True)
        here = self._here(zone, proc)
        phase = proc.state.rsplit(":", 1)[1]
        with events.step(zone.name, proc.id, proc.kind, proc.state):
            if here.step.sig0 is not None:  # the SIG(0) key roll: act and observe only
                return await sig0_steps.phase(self, here, phase)
            if phase == "act":
                return await self._act(here)
            if phase == "converge":
                return await self._converge(here)
            if phase == "observe":
                return await self._observe(here)
            return self._hold(here)

    async def refresh(self, zone: ZoneConfig, process_id: str) -> bool:
        """While a process waits (observe/hold), keep the step's target applied: an
        owner-signed set is re-signed before its signatures run out (a slow parent can take
        days for a DS change), a change an API lost is applied again."""
        async with zone_lease(self.rt.store, zone.name, LEASE_SECONDS):
            proc = self.rt.store.get_process(process_id)
            if proc is None or proc.status != "running" or \
                    proc.state.rsplit(":", 1)[1] not in ("observe", "hold"):
                return False  # act/converge apply anyway, in a moment
            here = self._here(zone, proc)
            if here.step.sig0 is not None:
                return False  # changes no DNSKEY/DS/NS target; its act published the KEY
            view = await self._observe_api(zone, signers=here.signers)
            _intent, goal = await self._goal(here, view)
            kept = await self.converger(zone, list(here.signers)).keep(goal, view)
            if not kept.changes:
                return False
            data = here.data.but(delivered_until=kept.fresh_until or here.data.delivered_until)
            self.rt.store.transition(
                proc.id, proc.state, actor=self.rt.actor, data=data.as_json(),
                reason="kept the step's target: " + "; ".join(kept.changes),
                evidence={"changes": kept.changes, "target": goal.as_json()})
            self.report(f"{zone.name}: kept the target of {proc.state} "
                        f"({'; '.join(kept.changes)})")
            return True

    # -- shared -----------------------------------------------------------------------------

    async def _observe_api(self, zone: ZoneConfig, *, csync: bool = False,
                           step: Step | None = None, api: bool = True,
                           servers: bool = True, signers: tuple[str, ...] | None = None,
                           only: tuple[dns.rdatatype.RdataType, ...] | None = None) -> ZoneView:
        # An owner-signed zone's target needs only each provider's own keys from its API; the
        # zone's contents (for TTLsig) only when the step holds for a TTL, its apex NS/CSYNC
        # only in a signer change. Reading less saves a provider call per zone and step.
        keys_only = self._keys_only(zone, step, csync)
        view, errors = await observe(self.rt, zone, csync=csync, keys_only=keys_only, api=api,
                                     servers=servers, only=only,
                                     signers=None if signers is None else list(signers))
        if errors:
            raise Refused(f"{zone.name}: {len(errors)} provider API(s) failed; the process "
                          "stays where it is and retries", [str(e) for e in errors.values()])
        return view

    def _keys_only(self, zone: ZoneConfig, step: Step | None, csync: bool) -> bool:
        return (step is not None and not step.hold and not csync
                and self._conv(zone).own_keys_suffice)

    def seed(self, proc: ProcessInfo, view: ZoneView, keys_only: bool) -> None:
        """``view``, read (with ``keys_only``) just before ``proc`` started: sync's preview."""
        self._fresh[proc.id] = FreshView(proc.state, _now(), view, keys_only)

    def _fresh_view(self, here: ProcessAt, csync: bool) -> ZoneView | None:
        """The seeded view, if the process has not moved since, it is younger than
        API_REFRESH_SECONDS, and it was read as this converge would read it."""
        fresh = self._fresh.pop(here.proc.id, None)
        if fresh is None or fresh.state != here.proc.state or csync or \
                (_now() - fresh.at).total_seconds() >= API_REFRESH_SECONDS or \
                fresh.keys_only != self._keys_only(here.zone, here.step, csync):
            return None
        return fresh.view

    def _intent(self, here: ProcessAt, view: ZoneView) -> StepIntent:
        names = {p.name: list(p.ns_names) for p in self.rt.config.providers}
        return step_intent(here.step, here.data.payload, list(here.signers), view.api, names)

    async def _goal(self, here: ProcessAt, view: ZoneView) -> tuple[StepIntent, Goal]:
        intent = self._intent(here, view)
        conv = self.converger(here.zone, list(intent.key_signers))
        return intent, await conv.goal(here.step, intent, here.data, view)

    def _context(self, here: ProcessAt, view: ZoneView, goal: Goal | None, intent: StepIntent,
                 content: tuple[str, ...] = ()) -> CheckContext:
        return CheckContext(here.step, view, goal, here.data.payload,
                            here.signers, intent.ns, content)

    # -- phases -----------------------------------------------------------------------------

    async def _act(self, here: ProcessAt) -> Outcome:
        zone, step, data = here.zone, here.step, here.data
        if not step.precondition and data.rolled is None:
            if single_pass(step, data):
                return await self._converge(here)  # act -> observe: see single_pass
            # nothing to check or change here: converge observes anyway, a moment later
            return self._move(here, "converge", f"{step.title}: no preconditions",
                              data=data, evidence={},
                              waiting_for="every provider brought to the step's target")
        member = isinstance(data.payload, Member)
        view = await self._observe_api(zone, csync=member, step=step, signers=here.signers)
        intent = self._intent(here, view)
        content: tuple[str, ...] = ()
        if NEEDS_CONTENT & set(step.precondition):
            everyone = sorted({*here.signers, *intent.key_signers})
            content = tuple(f"[{f.code}] {f.message}"
                            for f in await content_findings(self.rt, zone, everyone))
        problems = precondition_problems(self._context(here, view, None, intent, content))
        if problems:
            return self._wait(here, "precondition: " + "; ".join(problems))
        rolled = data.rolled
        if rolled is None:
            return self._move(here, "converge", f"{step.title}: preconditions hold",
                              data=data, evidence={"observed": view_evidence(view)},
                              waiting_for="every provider brought to the step's target")
        holder = self.converger(zone, list(here.signers)).key_holder(rolled.signer)
        state = ApiZoneState(rolled.signer, await holder.own_keys(view), frozenset(),
                             frozenset(), frozenset())
        adopted: list[str] = []
        if rolled.new is None and step.keys.get("new") is not None:
            found = adoptable(state, rolled)
            if found is not None:
                rolled = replace(rolled, new=found.key, new_id=found.key_id)
                adopted.append(f"adopted {rolled.role.upper()} {found.key.key_tag} at "
                               f"{rolled.signer}: created by an interrupted attempt")
                self.report(f"{zone.name}: adopting successor {found.key.key_tag} created by "
                            "an interrupted attempt")
        done: list[str] = adopted
        for op in key_ops(step, rolled, state):
            note = None
            if op.kind == "create":
                created = await holder.create(rolled.role, op.active)
                rolled = replace(rolled, new=created.key, new_id=created.key_id)
            elif op.kind == "set":
                assert op.key_id is not None
                await holder.set_state(op.key_id, op.active)
            else:
                assert op.key_id is not None
                note = await holder.delete(op.key_id)
            done.append(op.describe(rolled) + (f" ({note})" if note else ""))
        return self._move(here, "converge", f"{step.title}: keys at {rolled.signer}",
                          data=data.but(payload=rolled), evidence={"key_ops": done},
                          waiting_for="every provider brought to the step's target")

    async def _converge(self, here: ProcessAt) -> Outcome:
        member = isinstance(here.data.payload, Member)
        view = self._fresh_view(here, member) or await self._observe_api(
            here.zone, csync=member, step=here.step, signers=here.signers)
        intent, goal = await self._goal(here, view)
        applied = await self.converger(here.zone, list(here.signers)).apply(goal, view)
        changes = applied.changes + await converge_apex(self.rt, here.zone, intent, view)
        channel = self.parent_channel(here.zone)
        if channel is not None:  # the SIG(0) KEY the parent checks, at every signer
            changes += await channel.publish_key(view)
        data = here.data.but(observe_since=_now(), stalled=None,
                             delivered_until=applied.fresh_until or here.data.delivered_until)
        if applied.fresh_until is None and not intent.ns and intent.csync is None:
            # The observe phase that follows starts from this target: the providers' APIs
            # were read a moment ago, and what was applied is what it waits to see served
            # (a re-signed set is re-read: its freshness belongs to the target).
            self._targets[here.proc.id] = StepTarget(here.next_state("observe"), _now(),
                                                     view.api, intent, goal, applied.api)
        return self._move(here, "observe",
                          f"{here.step.title}: {len(changes)} provider change(s) applied",
                          data=data, evidence={"changes": changes, "target": goal.as_json()},
                          waiting_for=", ".join(here.step.observe) or "nothing")

    async def _observe(self, here: ProcessAt) -> Outcome:
        csync = isinstance(here.data.payload, Member)
        # A step that waits only for the parent, and holds for no TTL, needs no answer from
        # the signers' nameservers between the full reads (every API_REFRESH_SECONDS, which
        # also keep its target applied): a registry takes minutes, each poll would ask them.
        servers = bool(here.step.hold) or any(o not in ("parent", "parent-ns")
                                              for o in here.step.observe)
        now = _now()
        last = self._targets.get(here.proc.id)
        after: dict[str, ApiZoneState] | None = None  # the APIs now, if known
        read_at = now  # when they were read
        full_read = not (last is not None and last.state == here.proc.state
                         and (now - last.at).total_seconds() < API_REFRESH_SECONDS)
        if last is not None and not full_read:
            # Nameservers are polled fast while a change propagates; the providers' APIs
            # (and so the step's target) are re-read only every API_REFRESH_SECONDS.
            view = await self._observe_api(here.zone, csync=csync, step=here.step, api=False,
                                           servers=servers, signers=here.signers,
                                           only=None if here.step.hold else polled_types(
                                               here.step.observe, csync))
            view = replace(view, api=last.api)
            intent, goal, after, read_at = last.intent, last.goal, last.after, last.at
        else:
            view = await self._observe_api(here.zone, csync=csync, step=here.step,
                                           signers=here.signers)
            intent, goal = await self._goal(here, view)
            kept = await self.converger(here.zone, list(here.signers)).keep(goal, view)
            self._targets[here.proc.id] = StepTarget(here.proc.state, now, view.api, intent, goal)
            after = None if kept.changes else view.api
            if kept.changes:
                self.report(f"{here.zone.name}: re-applying {len(kept.changes)} change(s) the "
                            "provider APIs do not show: " + "; ".join(kept.changes))
                self._targets.pop(here.proc.id, None)
                if kept.fresh_until is not None:
                    # a re-signed set: wait until it, not the older one, is served
                    return self._wait(here, f"{goal.what} (re-signed)", data=here.data.but(
                        delivered_until=kept.fresh_until))
        missing = unmet(self._context(here, view, goal, intent))
        if missing:
            at_parent = [m.startswith("parent") and any(o.startswith("parent")
                                                        for o in here.step.observe)
                         for m in missing]
            if all(at_parent):
                missing += await self._nudge_parent(here, view, goal, intent, full_read)
            return self._wait(here, "; ".join(missing), parent=any(at_parent),
                              parent_only=all(at_parent))
        outcome = self._observed(here, view)
        if after is not None and servers and single_pass(here.step, here.data) and \
                not outcome.finished:
            # The next step's converge, a moment later, starts from what was just seen:
            # the nameservers and parent as polled now, the APIs as the target left them.
            self._fresh[here.proc.id] = FreshView(
                outcome.state, read_at, replace(view, api=after),
                self._keys_only(here.zone, here.step, csync))
        return outcome

    async def _nudge_parent(self, here: ProcessAt, view: ZoneView, goal: Goal,
                            intent: StepIntent, full_read: bool) -> list[str]:
        """A step waiting only for the parent, on a full read (or while the parent checks
        the zone's SIG(0) key and an inquiry is due): a dsync parent is sent what its
        servers lack (parent_channel.py); the exchange goes into the history."""
        channel = self.parent_channel(here.zone)
        if channel is None or not (full_read or channel.inquiry_due()):
            return []
        observe = here.step.observe
        said = await channel.nudge(goal.ds_keys if "parent" in observe else None,
                                   intent.ns if "parent-ns" in observe else None, view)
        for line in said:
            if line.startswith("sent"):
                self.rt.store.transition(here.proc.id, here.proc.state, actor=self.rt.actor,
                                         data=here.data.as_json(), reason=f"parent: {line}",
                                         evidence={"parent_update": line})
                self.report(f"{here.zone.name}: {line}")
        return said


__all__ = ["Engine", "Outcome", "state_name"]
