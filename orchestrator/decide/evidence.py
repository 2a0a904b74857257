"""Compact, JSON-ready summaries of an observation, stored as evidence in the history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dns.rrset

from core.observation import ZoneView


def view_evidence(view: ZoneView) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for server in view.servers:
        if not server.ok:
            servers[server.label] = {"error": server.error}
            continue
        servers[server.label] = {
            "dnskey": sorted(k.key_tag for k in server.keys),
            # the tags above may collide between keys; these name each key distinctly
            "dnskey_ids": sorted(f"{k.key_tag}~{k.fingerprint}" for k in server.keys),
            "dnskey_ttl": server.dnskey.ttl if server.dnskey else None,
            "dnskey_signers": sorted(server.dnskey.signer_tags) if server.dnskey else [],
            "soa_signers": sorted(server.soa.signer_tags) if server.soa else [],
            "cds": sorted(d.key_tag for d in server.cds_set),
            "at": server.at.isoformat(),
        }
    parent: dict[str, Any] = {}
    for p in view.parent:
        parent[p.server] = ({"error": p.error} if p.error else
                            {"ds": sorted(d.key_tag for d in p.ds_set),
                             "ttl": p.ds.ttl if p.ds else None, "at": p.at.isoformat()})
    return {"servers": servers, "parent": parent}


def _rdatas(rrset: dns.rrset.RRset) -> frozenset[str]:
    return frozenset(rd.to_text() for rd in rrset)


def cache_settles_at(view: ZoneView) -> datetime | None:
    """When the last cached DNSKEY/DS RRset that differs from what is served now expires:
    until then a resolver may still validate with an outdated set."""
    current = {_rdatas(s.dnskey.rrset) for s in view.servers if s.dnskey is not None}
    current |= {_rdatas(p.ds.rrset) for p in view.parent if p.ds is not None}
    old = [c.expires for c in (*view.cached_dnskeys, *view.cached_ds)
           if _rdatas(c.rrset) not in current]
    return max(old, default=None)


def ceil_seconds(at: datetime) -> str:
    """RFC 3339 to the second, rounded *up*: a printed "until" must never be early."""
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return at.isoformat(timespec="seconds")
