"""Zone content across providers: would a resolver get a different answer depending on
which signer it asked? Pure: the fetching is in ``orchestrator.observe.content``.

Compared: every RRset except signing material (which differs by design between signers
and is checked by ``verify``) and the SOA. The SOA legitimately differs between providers:
each signer is its own primary, so it writes its own MNAME and RNAME, keeps its own serial
and its own refresh/retry/expire. None of these changes what a resolver does. The one SOA
value that does is the negative-caching TTL, ``min(SOA TTL, SOA minimum)`` (RFC 2308 §5):
how long NXDOMAIN/NODATA answers, and the NSEC/NSEC3 records proving them, are cached.
A difference there is a warning, not a breach: answers stay correct and validatable, only
the time a negative answer may linger depends on the provider asked. Hold times already use
the largest value any server serves (``decide.timing.measure``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Rrsets = dict[tuple[str, str], frozenset[str]]  # (owner, type) -> rdata texts

# Signing material differs by design between signers (Model 2) and is checked by verify.
IGNORED = frozenset({"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY",
                     "CSYNC", "TYPE65534"})  # 65534: signing-state records some signers keep


@dataclass(frozen=True)
class Soa:
    """The SOA fields a comparison needs (the rest differs legitimately between signers)."""

    ttl: int
    minimum: int
    text: str = ""  # the full rdata, for messages

    @property
    def negative_ttl(self) -> int:
        return min(self.ttl, self.minimum)


@dataclass(frozen=True)
class Content:
    """One provider's zone as served: its RRsets (SOA and signing material left out) and
    its apex SOA, if it answered with one."""

    rrsets: Rrsets = field(default_factory=dict)
    soa: Soa | None = None


@dataclass(frozen=True)
class Difference:
    severity: Literal["breach", "warning"]
    code: str
    message: str


def keep(rdtype: str) -> bool:
    """Whether an RRset of this type goes into ``Content.rrsets``."""
    return rdtype not in IGNORED and rdtype != "SOA"


def compare(contents: Mapping[str, Content], zone: str, *,
            managed: frozenset[tuple[str, str]] = frozenset()) -> list[Difference]:
    """Differences between providers' contents (empty: a resolver cannot tell them apart).
    ``managed``: (owner, type) RRsets the controller itself keeps identical at every
    signer (a dsync zone's SIG(0) KEY at the apex), so a joining signer lacks them until
    the process that adds it writes them there: not a difference to refuse it for."""
    if len(contents) < 2:
        return []
    return _rrset_differences(contents, managed) + _soa_differences(contents, zone)


def _rrset_differences(contents: Mapping[str, Content],
                       managed: frozenset[tuple[str, str]]) -> list[Difference]:
    keys = set().union(*(c.rrsets.keys() for c in contents.values())) - managed
    out = []
    for owner, rdtype in sorted(keys):
        seen = {p: c.rrsets.get((owner, rdtype), frozenset()) for p, c in contents.items()}
        if len(set(seen.values())) > 1:
            detail = "; ".join(f"{p}: {', '.join(sorted(v)) or 'absent'}"
                               for p, v in sorted(seen.items()))
            out.append(Difference("breach", "CONTENT_DIFFERS",
                                  f"{owner} {rdtype} differs ({detail})"))
    return out


def _soa_differences(contents: Mapping[str, Content], zone: str) -> list[Difference]:
    missing = sorted(p for p, c in contents.items() if c.soa is None)
    if missing and len(missing) < len(contents):
        # One provider serves no SOA for the zone: it does not serve the zone at all.
        return [Difference("breach", "CONTENT_DIFFERS",
                           f"{zone} SOA differs (absent at {', '.join(missing)})")]
    soas = {p: c.soa for p, c in contents.items() if c.soa is not None}
    if len({s.negative_ttl for s in soas.values()}) <= 1:
        return []
    detail = "; ".join(f"{p}: {s.negative_ttl} = min(TTL {s.ttl}, minimum {s.minimum})"
                       for p, s in sorted(soas.items()))
    largest = max(s.negative_ttl for s in soas.values())
    return [Difference(
        "warning", "NEGATIVE_TTL_DIFFERS",
        f"{zone} SOA negative-caching TTL differs ({detail}): a negative answer is cached "
        f"for up to {largest} s depending on the provider asked; hold times use the largest")]
