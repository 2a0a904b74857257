"""Pure facts the metrics report, computed from an observation (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.observation import ZoneView


def signatures_expire(view: ZoneView) -> datetime | None:
    """When the served DNSKEY RRset's signatures run out first: per server the latest
    RRSIG expiration it serves (any one valid signature keeps the set valid there), then
    the earliest over the servers (a resolver may ask any of them). None if no server
    showed a signed DNSKEY RRset."""
    times = [max(int(sig.expiration) for sig in s.dnskey.rrsigs)
             for s in view.servers
             if s.dnskey is not None and s.dnskey.rrsigs is not None and len(s.dnskey.rrsigs)]
    if not times:
        return None
    return datetime.fromtimestamp(min(times), UTC)
