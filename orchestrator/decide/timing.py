"""RFC 7583 timing from observed TTLs. Pure.

Every wait is ``observed_at + TTL terms + propagation_delay + safety_margin``, where
``observed_at`` is the moment the controller *saw* every nameserver serve the change
(so Dprp, Dsgn and Dreg are measured, not assumed) and the TTLs are the largest the
controller has seen, including RRsets that may still sit in caches with an older, longer
TTL. Nothing here sleeps; the engine wakes at the deadline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from dns.rdtypes.ANY.SOA import SOA

from core.config import PolicyConfig
from core.observation import ZoneView


@dataclass(frozen=True)
class Ttls:
    key: int  # TTLkey
    sig: int  # TTLsig
    ds: int  # TTLds
    ns: int = 0  # TTLns: NS-Wait-Time, parent and every signer

    def term(self, name: str) -> int:
        return {"TTLkey": self.key, "TTLsig": self.sig, "TTLds": self.ds, "TTLns": self.ns}[name]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def measure(view: ZoneView) -> Ttls:
    """The TTL terms from one observation (API zone contents included, when read)."""
    key = max([s.dnskey.ttl for s in view.servers if s.dnskey] +
              [int(c.rrset.ttl) for c in view.cached_dnskeys], default=0)
    sig = key
    for server in view.servers:
        if server.soa is not None:
            soa = cast(SOA, server.soa.rrset[0])
            # Negative answers (NSEC/NSEC3) are cached for min(SOA TTL, SOA minimum).
            sig = max(sig, server.soa.ttl, min(server.soa.ttl, int(soa.minimum)))
        for signed in (server.cds, server.cdnskey):
            if signed is not None:
                sig = max(sig, signed.ttl)
    for state in view.api.values():
        if state.max_ttl:
            sig = max(sig, state.max_ttl)
    ds = max([p.ds.ttl for p in view.parent if p.ds] +
             [int(c.rrset.ttl) for c in view.cached_ds], default=0)
    ns = max([s.ns.ttl for s in view.servers if s.ns] +
             [p.ns_ttl for p in view.parent if p.ns_ttl is not None], default=0)
    return Ttls(key=key, sig=sig, ds=ds, ns=ns)


def hold_seconds(terms: Iterable[str], combine: str, ttls: Ttls) -> int:
    values = [ttls.term(t) for t in terms]
    if not values:
        return 0
    return max(values) if combine == "max" else sum(values)


def deadline(
    observed_at: datetime, terms: list[str], combine: str, ttls: Ttls, policy: PolicyConfig
) -> datetime:
    if not terms:
        return observed_at
    return (observed_at + timedelta(seconds=hold_seconds(terms, combine, ttls))
            + policy.propagation_delay + policy.safety_margin)


PARENT_POLL_CAP = 60.0  # seconds between polls of a long parent wait


def poll_delay(since: datetime, now: datetime, *, parent: bool = False) -> float:
    """Poll fast right after a change (most are live within a second), then back off.

    A wait for the parent alone backs off further, to a tenth of the time waited so far
    (at most a minute): a registry takes minutes to hours, and every poll re-reads every
    provider API and nameserver. The DS is then seen at most ~10 % (or a minute) late."""
    elapsed = max(0.0, (now - since).total_seconds())
    delay = min(2.0, 0.1 + 0.1 * elapsed)
    return min(PARENT_POLL_CAP, max(delay, 0.1 * elapsed)) if parent else delay
