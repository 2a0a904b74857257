"""A step's target, as the checks see it, for either way of converging the providers.

- ``CrossImportGoal`` (every signer its own keys): every provider serves the others' keys
  beside its own and identical CDS/CDNSKEY (a ``SyncPlan``).
- ``OwnerSignedGoal`` (the owner's KSK signs the combined set): every provider serves the
  owner-signed DNSKEY/CDS/CDNSKEY RRsets (a ``Model1Target``).

The step vocabulary (``checks``) asks only what this interface offers, so no check knows
which model a zone uses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from core.keys import Key
from core.observation import ZoneView
from orchestrator.decide import owner_signing
from orchestrator.decide.owner_signing import Model1Target
from orchestrator.decide.sync_plan import SyncPlan, served_progress


class Goal(Protocol):
    @property
    def zone(self) -> str: ...

    @property
    def ds_keys(self) -> frozenset[Key]:
        """The KSKs the parent's DS RRset must name."""

    @property
    def what(self) -> str:
        """What ``lagging`` looks for, for messages."""

    def lagging(self, view: ZoneView) -> tuple[str, ...]:
        """The nameservers that do not serve the target yet."""

    def as_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CrossImportGoal:
    plan: SyncPlan
    cds: bool = True  # False: only the DNSKEY RRsets count

    @property
    def zone(self) -> str:
        return self.plan.zone

    @property
    def ds_keys(self) -> frozenset[Key]:
        return self.plan.cdnskey_target

    @property
    def what(self) -> str:
        return "target DNSKEY/CDS/CDNSKEY" if self.cds else "target DNSKEY RRsets"

    def lagging(self, view: ZoneView) -> tuple[str, ...]:
        return served_progress(self.plan, view, cds=self.cds).lagging

    def as_json(self) -> dict[str, Any]:
        return self.plan.as_json()


@dataclass(frozen=True)
class OwnerSignedGoal:
    target: Model1Target
    fresh_until: datetime | None = None  # signatures at least this fresh (a re-signed set)

    @property
    def zone(self) -> str:
        return self.target.zone

    @property
    def ds_keys(self) -> frozenset[Key]:
        return self.target.cds

    @property
    def what(self) -> str:
        return "the owner-signed combined set"

    def lagging(self, view: ZoneView) -> tuple[str, ...]:
        # Only the providers the set is delivered to: a leaving one keeps its old set.
        mine = replace(view, servers=tuple(s for s in view.servers
                                           if s.provider in self.target.zsks))
        return owner_signing.served_progress(self.target, mine,
                                             fresh_until=self.fresh_until).lagging

    def as_json(self) -> dict[str, Any]:
        return self.target.as_json()
