"""The child's SIG(0) key roll, pure: what the process remembers (``Sig0Roll``, persisted
in its data) and what its steps observed (``Sig0Observed``, read by the engine for the
``key-served`` and ``parent-key`` observations of ``orchestrator.decide.checks``).

The key that signs the zone's UPDATEs is the oldest key in its store; the roll adds the
successor (so for a while the store, and the KEY RRset at every signer, holds both),
has the parent move its trust to the successor by an UPDATE the predecessor signs, then
retires the predecessor from the store, which makes the successor the oldest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sig0Roll:
    """The two SIG(0) keys of one roll, by store id (``K<zone>+<alg>+<tag>``) and tag."""

    old_id: str
    old_tag: int
    new_id: str | None = None
    new_tag: int | None = None

    def as_data(self) -> dict[str, Any]:
        return {"old_id": self.old_id, "old_tag": self.old_tag, "new_id": self.new_id,
                "new_tag": self.new_tag}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Sig0Roll:
        return cls(old_id=data["old_id"], old_tag=int(data["old_tag"]),
                   new_id=data.get("new_id"),
                   new_tag=int(data["new_tag"]) if data.get("new_tag") is not None else None)


@dataclass(frozen=True)
class Sig0Observed:
    """What a SIG(0) step saw: the KEY RRset it wants served (canonical texts), the KEY
    RRset each signer nameserver serves (None: no answer), and what the parent said of the
    successor when asked (a KeyState word, None when not asked)."""

    want: frozenset[str]
    served: dict[str, frozenset[str] | None] = field(default_factory=dict)
    parent_state: str | None = None


def key_lagging(observed: Sig0Observed) -> list[str]:
    """The nameservers that do not serve exactly the wanted KEY RRset."""
    return sorted(label for label, keys in observed.served.items() if keys != observed.want)


def parent_trust_missing(roll: Sig0Roll, observed: Sig0Observed) -> list[str]:
    """Empty once the parent says it trusts the successor."""
    if observed.parent_state == "trusted":
        return []
    return [f"the parent trusting SIG(0) key {roll.new_tag} "
            f"(it says: {observed.parent_state or 'nothing yet'})"]
