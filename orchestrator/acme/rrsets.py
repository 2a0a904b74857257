"""Read-modify-write of one TXT RRset at every signer of a zone, serialized by the zone's
lease.

Several writers share one RRset (a wildcard and an apex order both use
``_acme-challenge.example.com``; two ACME clients may run at once), so a writer reads the
RRset, changes only its own value and writes the result back. Two writers interleaving
read and write would lose one value, so the read-modify-write runs under the zone's
lease in the state database: a second ``acme publish`` waits for the first to finish its
writes (not its propagation wait). The lease is the one every zone change takes, so an
ACME write also never interleaves with a process step.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dns.name

from core.config import ZoneConfig
from core.errors import MultisignerError, Refused, StateError
from orchestrator.runtime import LEASE_SECONDS, Runtime, holder_id
from providers.base import Capability

Edit = Callable[[list[str]], list[str] | None]  # records -> new records, None: unchanged
LEASE_WAIT = 60.0  # seconds a writer waits for the zone's lease before giving up


@dataclass
class Change:
    """What one read-modify-write did at every provider."""

    changed: list[str] = field(default_factory=list)  # providers whose RRset was rewritten
    unchanged: list[str] = field(default_factory=list)  # already as wanted
    failed: dict[str, str] = field(default_factory=dict)  # provider -> error
    before: dict[str, list[str]] = field(default_factory=dict)  # changed provider -> records
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def check_writable(rt: Runtime, zone: ZoneConfig) -> list[str]:
    """The zone's signers, all able to write RRsets; refused (nothing written) if one
    cannot: a value at some providers only would fail validation at random."""
    signers = rt.signers(zone)
    lacking = [p for p in signers if not rt.provider(p).can(Capability.WRITE_RRSETS)]
    if lacking:
        raise Refused(
            f"zone {zone.name}: signer(s) {', '.join(lacking)} cannot write arbitrary "
            "RRsets through this controller (no WRITE_RRSETS capability); a challenge "
            "published at the other signers only would fail at random; nothing changed")
    return signers


@asynccontextmanager
async def zone_lease(rt: Runtime, zone: str, wait: float | None = None
                     ) -> AsyncIterator[None]:
    """Hold ``zone``'s lease for the block, waiting up to ``wait`` (default LEASE_WAIT)
    seconds for it."""
    wait = LEASE_WAIT if wait is None else wait
    holder = holder_id()
    deadline = time.monotonic() + wait
    while not rt.store.acquire_lease(zone, holder, LEASE_SECONDS, datetime.now(UTC)):
        if time.monotonic() >= deadline:
            info = rt.store.lease_info(zone)
            other = info.holder if info else "another controller"
            raise StateError(
                f"zone {zone} stayed locked by {other} for {wait:.0f}s (another ACME "
                "write or a process step holds its lease); nothing changed, try again")
        await asyncio.sleep(0.1 + random.random() * 0.2)  # jitter only
    try:
        yield
    finally:
        rt.store.release_lease(zone, holder)


async def change_txt(rt: Runtime, zone: ZoneConfig, name: dns.name.Name, edit: Edit,
                     ttl: int, providers: Sequence[str]) -> Change:
    """Apply ``edit`` to the TXT RRset at ``name`` at every provider in ``providers``,
    concurrently; a failing provider is reported, the others are still changed. The
    caller holds the zone's lease."""
    owner = name.to_text()
    started = time.monotonic()

    before: dict[str, list[str]] = {}

    async def one(provider: str) -> bool:
        api = rt.provider(provider)
        current = await api.read_rrset(zone.name, owner, "TXT")
        records = list(current.records) if current else []
        new = edit(records)
        if new is None:
            return False
        before[provider] = records
        await api.set_rrset(zone.name, owner, "TXT", new, current.ttl if current else ttl)
        return True

    results = await asyncio.gather(*(one(p) for p in providers), return_exceptions=True)
    out = Change(seconds=round(time.monotonic() - started, 3), before=before)
    for provider, result in zip(providers, results, strict=True):
        if isinstance(result, MultisignerError):
            out.failed[provider] = str(result)
        elif isinstance(result, BaseException):
            raise result
        elif result:
            out.changed.append(provider)
        else:
            out.unchanged.append(provider)
    return out
