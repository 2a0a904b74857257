"""What one runbook step asks of the providers, whatever the model: whose keys are in every
key set, which keys the CDS must leave out or the key sets must drop, and the NS and CSYNC
RRsets every signer serves. Pure; the converge implementations turn it into a target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.keys import Key
from core.observation import ApiZoneState
from orchestrator.decide import membership, rollover
from orchestrator.decide.membership import Member
from orchestrator.decide.process_data import Payload
from orchestrator.decide.rollover import Rolled
from runbooks import Step


@dataclass(frozen=True)
class StepIntent:
    key_signers: tuple[str, ...]  # the signers whose keys every key set carries
    cds_exclude: frozenset[Key] = frozenset()  # KSKs the CDS must not name (yet, or any more)
    force_remove: frozenset[Key] = frozenset()  # keys withdrawn everywhere in this step
    ns: frozenset[str] | None = None  # the NS RRset every signer serves (None: untouched)
    csync: bool | None = None  # CSYNC published (True), removed (False), untouched (None)
    cds: bool = True  # False: this step converges the DNSKEY RRsets only


def step_intent(step: Step | None, payload: Payload, members: list[str],
                api: Mapping[str, ApiZoneState],
                ns_names: Mapping[str, list[str]]) -> StepIntent:
    """The intent of ``step`` (None: the steady state) for a process about ``payload``."""
    if step is None:
        return StepIntent(tuple(members))
    cds = step.converge != "keys"
    if isinstance(payload, Rolled):
        exclude, remove = rollover.overrides(step, payload)
        return StepIntent(tuple(members), exclude, remove, cds=cds)
    if isinstance(payload, Member):
        signers = membership.key_signers(step, payload, members)
        exclude, remove = membership.overrides(step, payload, dict(api))
        ns = membership.ns_target(step, payload, members, {k: list(v) for k, v in
                                                          ns_names.items()})
        return StepIntent(tuple(signers), exclude, remove, ns, step.csync, cds=cds)
    return StepIntent(tuple(members), cds=cds)


__all__ = ["Member", "Rolled", "StepIntent", "step_intent"]
