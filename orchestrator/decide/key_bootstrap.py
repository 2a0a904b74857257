"""Whether a child's SIG(0) key may become trusted (pure): one round of the KEY bootstrap
checks, from what every address of every delegated nameserver served.

Methods (docs/parent-agent.md, "KEY bootstrap"):

* **at-apex** — the child is signed: at every address, the KEY RRset at the child apex
  contains the key and validates under a DNSKEY RRset signed by a key the parent's DS
  names. One round suffices: DNSSEC makes the answer authentic.
* **unsigned** — the child is not (or need not be) signed: at every address, asked over
  TCP (harder to spoof than UDP), the KEY RRset contains the key, and all addresses serve
  the same KEY RRset. This round must pass ``bootstrap_checks`` times, ``bootstrap_interval``
  apart, so that a spoofed answer would have to be kept up for that long (RFC 8078 sec. 3
  style: "check several times over extended time").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.name
import dns.rrset

from orchestrator.decide.cds_consistency import (
    NotValidated,
    Signed,
    differing,
    parse_ds,
    texts,
    trusted_keys,
    validate_under,
)


@dataclass(frozen=True)
class KeyAnswers:
    """What one address served: the KEY RRset at the child apex (and its RRSIGs), the
    DNSKEY RRset (for at-apex), or ``error``."""

    server: str
    error: str | None = None
    key: Signed = (None, None)
    dnskey: Signed = (None, None)


@dataclass(frozen=True)
class RoundResult:
    passed: bool
    reason: str
    servers: dict[str, str] = field(default_factory=dict)


def key_text(key: dns.rrset.RRset | None) -> tuple[str, ...]:
    return texts(key)


def check_round(child: str, method: str, wanted: str, answers: Sequence[KeyAnswers],
                current_ds: Sequence[str], now: float) -> RoundResult:
    """One round of ``method`` for the KEY whose canonical text is ``wanted``."""
    if not answers:
        return RoundResult(False, "the delegation has no nameserver address to ask")
    broken = {a.server: a.error for a in answers if a.error is not None}
    if broken:
        return RoundResult(False, "not every nameserver answered", broken)
    views = {a.server: key_text(a.key[0]) for a in answers}
    if diff := differing(views):
        return RoundResult(False, "the nameservers serve different KEY RRsets", diff)
    lacking = {s: ", ".join(v) or "(no KEY)" for s, v in views.items() if wanted not in v}
    if lacking:
        return RoundResult(False, "the KEY is not published at every nameserver", lacking)
    if method == "unsigned":
        return RoundResult(True, f"KEY served identically at {len(answers)} addresses")
    if not current_ds:
        return RoundResult(False, "at-apex needs a signed delegation: the parent holds no DS")
    owner = dns.name.from_text(child)
    problems: dict[str, str] = {}
    for a in answers:
        try:
            trusted_keys(owner, a.dnskey, parse_ds(current_ds), now)
            keys = a.dnskey[0]
            assert keys is not None  # trusted_keys refused a missing one
            validate_under(owner, "KEY", a.key, keys, now)
        except NotValidated as exc:
            problems[a.server] = str(exc)
    if problems:
        return RoundResult(False, "the KEY does not validate under the DS the parent holds",
                           problems)
    return RoundResult(True, f"KEY validated (DNSSEC) at {len(answers)} addresses")
