"""Signer add/remove decisions, pure: which signers take part in each step, which CDS,
NS and CSYNC RRsets every signer must serve, and whether the step's observations hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.keys import Key
from core.observation import ApiZoneState
from runbooks import Step

Direction = Literal["add", "remove"]
CSYNC_RECORD = "0 1 NS"  # RFC 7477: serial 0, flags "immediate", copy the NS RRset


@dataclass(frozen=True)
class Member:
    """The signer a signer-add/remove process is about, as persisted in process data."""

    provider: str
    direction: Direction

    def as_data(self) -> dict[str, Any]:
        return {"provider": self.provider, "direction": self.direction}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Member:
        return cls(provider=data["provider"], direction=data["direction"])


def key_signers(step: Step, member: Member, members: list[str]) -> list[str]:
    """The signers whose keys are exchanged in this step (every current member, minus the
    joining/leaving one when the step says ``member_keys = "without"``)."""
    if step.member_keys == "without":
        return [m for m in members if m != member.provider]
    out = list(members)
    if member.provider not in out:
        out.append(member.provider)
    return out


def overrides(step: Step, member: Member,
              api: dict[str, ApiZoneState]) -> tuple[frozenset[Key], frozenset[Key]]:
    """(cds_exclude, force_remove) for the converge plan."""
    state = api.get(member.provider)
    if state is None:
        return frozenset(), frozenset()
    exclude = state.signing_ksks if step.member_cds == "without" else frozenset()
    remove = state.published if step.member_keys == "without" else frozenset()
    return exclude, remove


def ns_target(step: Step, member: Member, members: list[str],
              ns_names: dict[str, list[str]]) -> frozenset[str] | None:
    """The NS RRset every signer must serve in this step (None: leave NS alone)."""
    if step.ns is None:
        return None
    names = [m for m in members if m != member.provider]
    if step.ns == "with":
        names.append(member.provider)
    return frozenset(n.lower() for m in names for n in ns_names.get(m, []))






def start_problems(direction: Direction, provider: str, members: list[str]) -> list[str]:
    if direction == "add" and provider in members:
        return [f"{provider} is already a signer"]
    if direction == "remove":
        if provider not in members:
            return [f"{provider} is not a signer (signers: {', '.join(members)})"]
        if len(members) == 1:
            return [f"{provider} is the last signer; a zone cannot lose its last signer"]
    return []
