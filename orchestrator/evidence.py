"""Compact, JSON-ready summaries of an observation, stored as evidence in the history."""

from __future__ import annotations

from typing import Any

from orchestrator.observation import ZoneView


def view_evidence(view: ZoneView) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for server in view.servers:
        if not server.ok:
            servers[server.label] = {"error": server.error}
            continue
        servers[server.label] = {
            "dnskey": sorted(k.key_tag for k in server.keys),
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
