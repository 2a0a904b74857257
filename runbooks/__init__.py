"""Declarative process definitions: the engine executes them, ``docs/`` renders them.

A runbook is a list of steps. Each step says which state the rolled keys must be in at the
signer (``keys``), which KSK the CDS/CDNSKEY RRsets name (``cds``), what must hold before
acting (``precondition``), what must be observed on the nameservers afterwards
(``observe``) and which RFC 7583 TTL terms to hold after that observation (``hold``).
``abort`` entries say how to return to a safe state from a given step. A step of the
SIG(0) key roll names a ``sig0`` action (and what to observe) instead. A runbook without
``model`` serves both models.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KeyTarget = Literal["published", "active", "removed"]
Observation = Literal["served", "data-signers", "dnskey-signers", "parent", "ns-served",
                      "parent-ns", "csync-served", "csync-gone", "key-served", "parent-key"]
Precondition = Literal["old-unused", "ds-covers-new", "ds-covers-old", "remaining-ds",
                       "content-matches"]
TtlTerm = Literal["TTLkey", "TTLsig", "TTLds", "TTLns"]
With = Literal["with", "without"]
# What a step of the SIG(0) key roll does to the zone's SIG(0) key store (and parent).
Sig0Action = Literal["add-successor", "roll-at-parent", "retire-predecessor",
                     "discard-successor"]

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
    "ns-served": "every nameserver of every signer serves the target NS RRset",
    "parent-ns": "every parent nameserver delegates to exactly the target NS names",
    "csync-served": "every nameserver of every signer serves the CSYNC record",
    "csync-gone": "no nameserver of any signer serves a CSYNC record any more",
    "key-served": "every nameserver of every signer serves the KEY RRset at the apex holding "
    "exactly the SIG(0) keys of the zone's key store",
    "parent-key": "the parent answers a KeyState inquiry (signed by the successor SIG(0) key) "
    "that it trusts the successor",
}
PRECONDITIONS: dict[str, str] = {
    "old-unused": "no nameserver of any provider serves a signature made with the predecessor",
    "ds-covers-new": "every DS RRset the parent served within its TTL matches the successor",
    "ds-covers-old": "every DS RRset the parent served within its TTL matches the predecessor",
    "remaining-ds": "the parent's DS RRset matches a KSK of a signer that stays",
    "content-matches": "every signer, the joining one included, serves the same zone content "
    "(RRsets compared without signatures, by AXFR where allowed, else a sample of names)",
}
TERMS: dict[str, str] = {
    "TTLkey": "the DNSKEY TTL (largest over every provider and every cached DNSKEY RRset)",
    "TTLsig": "the largest TTL of any signed RRset in the zone (read from the providers, "
    "including the SOA minimum for negative answers)",
    "TTLds": "the parent's DS TTL (largest over its servers and cached DS RRsets)",
    "TTLns": "NS-Wait-Time: the largest NS TTL at the parent and at every signer",
}


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str
    title: str
    keys: dict[Literal["new", "old"], KeyTarget] = Field(default_factory=dict)
    # "keys": converge only the DNSKEY RRsets (the CDS/CDNSKEY stay as served)
    converge: Literal["keys", "all"] = "all"
    cds: Literal["old", "new"] | None = None
    # signer add/remove: whether the joining/leaving signer's keys are exchanged with the
    # others, whether the CDS names its KSK, whether the NS RRsets list it, CSYNC published
    member_keys: With | None = None
    member_cds: With | None = None
    ns: With | None = None
    csync: bool | None = None
    sig0: Sig0Action | None = None
    precondition: list[Precondition] = Field(default_factory=list)
    observe: list[Observation] = Field(default_factory=list)
    hold: list[TtlTerm] = Field(default_factory=list)
    hold_combine: Literal["sum", "max"] = "sum"
    term: str = ""
    explain: str = ""

    @model_validator(mode="after")
    def _sig0_alone(self) -> Step:
        """A SIG(0) step changes the key store and the KEY RRset only: the engine runs it
        in its own two phases, so anything else it named would be silently ignored."""
        if self.sig0 is not None and (self.keys or self.cds or self.member_keys
                                      or self.member_cds or self.ns or self.csync is not None
                                      or self.precondition or self.hold):
            raise ValueError(f"step {self.id}: a sig0 step names nothing but its sig0 "
                             "action, observe, title and explain")
        return self


class AbortStep(Step):
    from_: list[str] = Field(alias="from")


class Runbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    # None: the same runbook for either model (a process that changes no DNSSEC key)
    model: Literal[1, 2] | None = None
    roles: list[Literal["zsk", "ksk", "csk"]] = Field(default_factory=list)
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
        for model in (1, 2) if book.model is None else (book.model,):
            out[f"{book.kind}/model{model}"] = book
    return out


def runbook(kind: str, model: int) -> Runbook:
    return all_runbooks()[f"{kind}/model{model}"]
