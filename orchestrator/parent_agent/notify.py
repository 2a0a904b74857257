"""RFC 9859 generalized NOTIFY: a child (or its signer) tells the parent "my CDS/CDNSKEY
(qtype CDS) or CSYNC (qtype CSYNC) changed; scan me now". The NOTIFY itself is not
authenticated and carries no data: it only moves the next scan of that child forward, so
the answer is NOERROR at once and the scan runs in the background. Scans of one child are
coalesced: NOTIFYs arriving while one is pending or running start no other."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype

from orchestrator.parent_agent import wire
from orchestrator.parent_agent.history import Recorder

log = logging.getLogger(__name__)

KINDS = {dns.rdatatype.CDS: "CDS", dns.rdatatype.CDNSKEY: "CDS", dns.rdatatype.CSYNC: "CSYNC"}
ScanFn = Callable[[str, str, tuple[str, ...]], Awaitable[object]]


class NotifyHandler:
    def __init__(self, zone: str, enabled: bool, recorder: Recorder, scan: ScanFn,
                 children: Callable[[], Awaitable[list[str]]]) -> None:
        self._zone = zone
        self._enabled = enabled
        self._recorder = recorder
        self._scan = scan
        self._children = children
        self._pending: dict[str, asyncio.Task[None]] = {}

    async def handle(self, request: dns.message.Message, actor: str) -> dns.message.Message:
        if len(request.question) != 1:
            return wire.answer_to(request, dns.rcode.FORMERR, dns.edns.EDECode.OTHER,
                                  "a NOTIFY names exactly one zone and type")
        question = request.question[0]
        child = question.name.to_text().lower()
        kind = KINDS.get(question.rdtype)
        evidence = {"child": child, "qtype": dns.rdatatype.to_text(question.rdtype)}
        if not self._enabled or kind is None:
            why = ("this agent does not accept NOTIFY" if not self._enabled else
                   "only NOTIFY(CDS), NOTIFY(CDNSKEY) and NOTIFY(CSYNC) are accepted")
            await self._recorder.record("notify", "refused", actor=actor, reason=why,
                                        evidence=evidence)
            return wire.answer_to(request, dns.rcode.REFUSED, dns.edns.EDECode.NOT_SUPPORTED,
                                  why)
        if child not in await self._children():
            why = f"{child} is not delegated from {self._zone}"
            await self._recorder.record("notify", "refused", actor=actor, reason=why,
                                        evidence=evidence)
            return wire.answer_to(request, dns.rcode.REFUSED, dns.edns.EDECode.NOT_AUTHORITATIVE,
                                  why)
        key = f"{child} {kind}"
        if key in self._pending and not self._pending[key].done():
            await self._recorder.record("notify", "ignored", actor=actor, evidence=evidence,
                                        reason="a scan of this child is already pending")
        else:
            await self._recorder.record("notify", "accepted", actor=actor, evidence=evidence,
                                        reason=f"{kind} scan scheduled")
            task = asyncio.get_running_loop().create_task(self._run(child, kind, actor))
            self._pending[key] = task
        return wire.answer_to(request, dns.rcode.NOERROR)

    async def _run(self, child: str, kind: str, actor: str) -> None:
        try:
            await self._scan(child, actor, (kind,))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("parent agent: scan of %s after NOTIFY failed", child)

    async def stop(self) -> None:
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()

    async def wait_idle(self) -> None:
        """Wait for the scans NOTIFYs started (tests and an orderly stop)."""
        await asyncio.gather(*self._pending.values(), return_exceptions=True)
