"""Declarative process definitions: the engine executes them, ``docs/`` renders them.

A runbook is a list of steps. Each step says which state the rolled keys must be in at the
signer (``keys``), which KSK the CDS/CDNSKEY RRsets name (``cds``), what must hold before
acting (``precondition``), what must be observed on the nameservers afterwards
(``observe``) and which RFC 7583 TTL terms to hold after that observation (``hold``).
``abort`` entries say how to return to a safe state from a given step.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

KeyTarget = Literal["published", "active", "removed"]
Observation = Literal["served", "data-signers", "dnskey-signers", "parent"]
Precondition = Literal["old-unused", "ds-covers-new", "ds-covers-old"]
TtlTerm = Literal["TTLkey", "TTLsig", "TTLds"]

_DIR = Path(__file__).parent

# What each observation/precondition name means, for the rendered docs.
OBSERVATIONS: dict[str, str] = {
    "served": "every nameserver of every provider serves the target DNSKEY, CDS and CDNSKEY "
    "RRsets",
    "data-signers": "every nameserver of the signer signs zone data with exactly the rolled "
    "keys that are active in this step",
    "dnskey-signers": "every nameserver of the signer signs its DNSKEY RRset with exactly the "
    "rolled keys that are active in this step",
    "parent": "every parent nameserver serves a DS RRset naming exactly the CDS keys",
}
PRECONDITIONS: dict[str, str] = {
    "old-unused": "no nameserver of any provider serves a signature made with the predecessor",
    "ds-covers-new": "every DS RRset the parent served within its TTL matches the successor",
    "ds-covers-old": "every DS RRset the parent served within its TTL matches the predecessor",
}
TERMS: dict[str, str] = {
    "TTLkey": "the DNSKEY TTL (largest over every provider and every cached DNSKEY RRset)",
    "TTLsig": "the largest TTL of any signed RRset in the zone (read from the providers, "
    "including the SOA minimum for negative answers)",
    "TTLds": "the parent's DS TTL (largest over its servers and cached DS RRsets)",
}


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str
    title: str
    keys: dict[Literal["new", "old"], KeyTarget]
    cds: Literal["old", "new"] | None = None
    precondition: list[Precondition] = Field(default_factory=list)
    observe: list[Observation] = Field(default_factory=list)
    hold: list[TtlTerm] = Field(default_factory=list)
    hold_combine: Literal["sum", "max"] = "sum"
    term: str = ""
    explain: str = ""


class AbortStep(Step):
    from_: list[str] = Field(alias="from")


class Runbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    model: Literal[1, 2]
    roles: list[Literal["zsk", "ksk", "csk"]]
    title: str
    summary: str
    references: list[str] = Field(default_factory=list)
    steps: list[Step]
    abort: list[AbortStep] = Field(default_factory=list)

    def step(self, step_id: str) -> Step:
        for step in (*self.steps, *self.abort):
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def abort_path(self, from_step: str) -> list[AbortStep]:
        """The abort steps that apply while the process is in ``from_step``, in order."""
        return [a for a in self.abort if from_step in a.from_]


@cache
def all_runbooks() -> dict[str, Runbook]:
    out: dict[str, Runbook] = {}
    for path in sorted(_DIR.glob("*.toml")):
        book = Runbook.model_validate(tomllib.loads(path.read_text()))
        out[f"{book.kind}/model{book.model}"] = book
    return out


def runbook(kind: str, model: int) -> Runbook:
    return all_runbooks()[f"{kind}/model{model}"]
