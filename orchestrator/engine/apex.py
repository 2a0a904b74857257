"""The apex NS and CSYNC RRsets at every signer, as a signer-change step wants them: the
combined NS RRset of the signers the step names, and CSYNC published while the parent is
asked to follow it (RFC 7477), removed after. Read before write."""

from __future__ import annotations

from core.config import ZoneConfig
from core.observation import ZoneView
from orchestrator.decide.intent import StepIntent
from orchestrator.decide.membership import CSYNC_RECORD
from orchestrator.runtime import Runtime


async def converge_apex(rt: Runtime, zone: ZoneConfig, intent: StepIntent,
                        view: ZoneView) -> list[str]:
    """The NS and CSYNC RRsets at every signer (read before write)."""
    out: list[str] = []
    if intent.ns is None and intent.csync is None:
        return out
    for name in rt.signers(zone):
        state = view.api[name]
        provider = rt.provider(name)
        ttl = next((s.ns.ttl for s in view.of(name) if s.ns), None) or 3600
        if intent.ns is not None and state.ns != intent.ns:
            await provider.set_apex_rrset(zone.name, "NS", sorted(intent.ns), ttl)
            out.append(f"{name}: NS = {', '.join(sorted(intent.ns))}")
        if intent.csync is not None:
            want = {CSYNC_RECORD} if intent.csync else set()
            if set(state.csync) != want:
                await provider.set_apex_rrset(zone.name, "CSYNC", sorted(want), ttl)
                out.append(f"{name}: CSYNC {'published' if want else 'removed'}")
    return out
