"""Rollover decisions, pure: which keys a runbook step wants where, whether its
preconditions and observations hold, and whether a rollover may start at all.

The I/O side (orchestrator/engine/runner.py) reads the world, asks these functions, acts, and
persists. Nothing here touches the network or the database, so every decision can be
tested and replayed from recorded data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.keys import Key, Role, parent_follows
from core.observation import ApiKey, ApiZoneState
from orchestrator.decide.invariant import Finding
from orchestrator.decide.sync_plan import (
    PlanInput,
    interlocks,
    plan_sync,
    served_progress,
)
from runbooks import Step

Which = Literal["old", "new"]
OWNER = "owner"  # the signer name of an owner-KSK rollover (the KSK lives in the owner's store)


@dataclass(frozen=True)
class Rolled:
    """The two keys of one rollover at one signer, as persisted in the process data."""

    signer: str
    role: Role
    old: Key
    old_id: str
    new: Key | None = None
    new_id: str | None = None
    existing_ids: tuple[str, ...] = ()  # the signer's key ids before the successor existed

    def key(self, which: Which) -> Key | None:
        return self.old if which == "old" else self.new

    def key_id(self, which: Which) -> str | None:
        return self.old_id if which == "old" else self.new_id

    def as_data(self) -> dict[str, Any]:
        return {"signer": self.signer, "role": self.role, "old": self.old.text,
                "old_id": self.old_id, "new": self.new.text if self.new else None,
                "new_id": self.new_id, "existing_ids": list(self.existing_ids)}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Rolled:
        return cls(signer=data["signer"], role=data["role"], old=Key(data["old"]),
                   old_id=data["old_id"], new=Key(data["new"]) if data.get("new") else None,
                   new_id=data.get("new_id"), existing_ids=tuple(data.get("existing_ids", ())))


@dataclass(frozen=True)
class KeyOp:
    kind: Literal["create", "set", "delete"]
    which: Which
    key_id: str | None
    active: bool = False
    published: bool = True

    def describe(self, rolled: Rolled) -> str:
        key = rolled.key(self.which)
        name = f"{self.which} {rolled.role.upper()}" + (f" {key.key_tag}" if key else "")
        if self.kind == "create":
            return f"create {name} ({'active' if self.active else 'published, not signing'})"
        if self.kind == "delete":
            return f"delete {name}"
        return f"{name}: {'active' if self.active else 'published, not signing'}"


def adoptable(state: ApiZoneState, rolled: Rolled) -> ApiKey | None:
    """A successor created by an earlier attempt whose outcome was never persisted (crash
    between the API call and the database write): adopt it instead of creating another."""
    sep = rolled.role in ("ksk", "csk")
    for key in state.own_keys:
        if key.key_id not in rolled.existing_ids and key.key.sep == sep:
            return key
    return None


def key_ops(step: Step, rolled: Rolled, state: ApiZoneState) -> list[KeyOp]:
    """Own-key changes at the signer for this step, in a safe order: create, activate,
    deactivate, delete — so the signer never has fewer signing keys than it needs."""
    by_id = {k.key_id: k for k in state.own_keys}
    creates: list[KeyOp] = []
    ups: list[KeyOp] = []
    downs: list[KeyOp] = []
    deletes: list[KeyOp] = []
    for which, target in step.keys.items():
        key_id = rolled.key_id(which)
        current = by_id.get(key_id) if key_id else None
        if target == "removed":
            if current is not None:
                deletes.append(KeyOp("delete", which, key_id))
            continue
        active = target == "active"
        if current is None:
            if which == "new" and rolled.new is None:
                creates.append(KeyOp("create", which, None, active=active))
            continue  # a key the process no longer has cannot be restored; observation says so
        if current.active != active or not current.published:
            (ups if active else downs).append(KeyOp("set", which, key_id, active=active))
    return creates + ups + downs + deletes


def overrides(step: Step, rolled: Rolled) -> tuple[frozenset[Key], frozenset[Key]]:
    """(cds_exclude, force_remove) for the converge plan of this step."""
    exclude: set[Key] = set()
    if step.cds == "old" and rolled.new is not None:
        exclude.add(rolled.new)
    elif step.cds == "new":
        exclude.add(rolled.old)
    remove = {k for w, t in step.keys.items() if t == "removed" and (k := rolled.key(w))}
    return frozenset(exclude), frozenset(remove)














def pick_old(state: ApiZoneState, key_role: Role) -> tuple[ApiKey | None, str | None]:
    """The key a rollover of ``key_role`` replaces at this signer, or why there is none."""
    uses_csk = any(k.role == "csk" and k.active for k in state.own_keys)
    if uses_csk and key_role != "csk":
        return None, (f"{state.provider} signs with a combined signing key (CSK); roll it with "
                      "--key csk")
    if not uses_csk and key_role == "csk":
        return None, f"{state.provider} uses separate KSK and ZSK; use --key ksk or --key zsk"
    candidates = [k for k in state.own_keys if k.role == key_role and k.active and k.published]
    if len(candidates) != 1:
        return None, (f"{state.provider} has {len(candidates)} active {key_role.upper()}s; a "
                      "rollover needs exactly one (is another rollover half-done there?)")
    return candidates[0], None


def start_problems(data: PlanInput, findings: list[Finding]) -> list[str]:
    """Why a rollover may not start now: the zone must be in its steady state."""
    out = [f"[{r.code}] {r.message}" for r in interlocks(data)]
    if out:
        return out
    plan = plan_sync(data)
    if not plan.empty or not served_progress(plan, data.view, cds=True).done:
        out.append(f"{data.zone} is not in sync ({len(plan.actions)} pending change(s)); run "
                   f"'multisigner sync {data.zone}' first")
    elif not all(p.error is None and parent_follows(p.ds_set, plan.cdnskey_target, data.zone)
                 for p in data.view.parent):
        out.append(f"the parent's DS RRset for {data.zone} does not match the CDS yet; run "
                   f"'multisigner sync {data.zone}' and let it finish")
    out += [f"[{f.code}] {f.message} (see 'multisigner verify {data.zone}')"
            for f in findings if f.severity == "breach"]
    return out
