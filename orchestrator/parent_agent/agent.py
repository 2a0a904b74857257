"""The parent agent (docs/parent-agent.md): one process in front of a parent zone that
answers RFC 9859 NOTIFYs and SIG(0)-signed DNS UPDATEs from its children, scans them for
CDS/CDNSKEY and CSYNC on a schedule, applies what it accepts to the parent zone through
the provider's API, and records every request in the history.

Order of work for each message (cheapest first, so a flood costs little): the source's
rate limit; the header (too short: dropped; an answer: dropped); the opcode; only then
parsing, signatures and API calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import dns.edns
import dns.message
import dns.opcode
import dns.rcode

from core import sig0
from core.config_types import hostport
from core.parent_agent_config import ParentAgentConfig
from orchestrator.parent_agent import dsync, keystate, wire
from orchestrator.parent_agent.bootstrap import Bootstrapper
from orchestrator.parent_agent.history import Recorder
from orchestrator.parent_agent.listener import Listener, Source
from orchestrator.parent_agent.notify import NotifyHandler
from orchestrator.parent_agent.parent_zone import read_parent
from orchestrator.parent_agent.ratelimit import RateLimiter
from orchestrator.parent_agent.scan import Scanner
from orchestrator.parent_agent.trust import TrustStore, canonical
from orchestrator.parent_agent.update import UpdateReceiver
from providers.powerdns import PowerDNSProvider
from providers.powerdns_rrsets import replace_rrsets
from state.store import StateStore

log = logging.getLogger(__name__)

CHILDREN_CACHE = 1.0  # seconds the list of delegations is reused between requests
SCAN_CONCURRENCY = 16
FLOOD_LOG_EVERY = 60.0


class Agent:
    def __init__(self, config: ParentAgentConfig, api: PowerDNSProvider, store: StateStore,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.api = api
        self.zone = config.zone
        self.clock = clock
        self.recorder = Recorder(store, config.zone)
        self.scanner = Scanner(api, config.zone, dict(config.hosts), config.ttl,
                               self.recorder)
        self.notify = NotifyHandler(config.zone, config.notify, self.recorder,
                                    self.scanner.scan, self.children)
        self.per_source = RateLimiter(config.rate_limit)
        self.own_key = own_key(config)
        self.trust = TrustStore(config.key_directory)
        self.bootstrapper = Bootstrapper(self.scanner, self.trust, self.recorder,
                                         config.bootstrap, config.bootstrap_checks,
                                         config.bootstrap_interval, clock)
        self.updates = UpdateReceiver(
            config.zone, api, self.recorder, self.trust, self.bootstrapper,
            RateLimiter(config.rate_limit), self.children, config.ttl,
            int(config.time_window.total_seconds()), self.sign_answer, self.scanner.locks,
            clock)
        self.listener = Listener(self.handle)
        self.bound: list[Source] = []
        self._children: tuple[float, list[str]] = (-1e9, [])
        self._scheduler: asyncio.Task[None] | None = None
        self._flood_noted: dict[str, float] = {}

    # -- life cycle ---------------------------------------------------------------------

    async def start(self, *, publish: bool = True, schedule: bool = True) -> list[Source]:
        self.bound = await self.listener.start([hostport(a) for a in self.config.listen])
        try:
            if publish:
                await self.publish_dsync()
        except BaseException:
            await self.listener.stop()
            raise
        if schedule and self.config.scan_interval.total_seconds() > 0:
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())
        log.info("parent agent for %s listening on %s", self.zone,
                 ", ".join(f"{h}:{p}" for h, p in self.bound))
        return self.bound

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        await self.notify.stop()
        await self.bootstrapper.stop()
        await self.listener.stop()

    async def publish_dsync(self) -> None:
        key = canonical(self.own_key.key_rdata()) if self.own_key is not None else None
        rrsets = dsync.records(self.zone, self.config.target, self.bound, self.config.notify,
                               self.config.ttl, key)
        await replace_rrsets(self.api, self.zone, rrsets)

    def sign_answer(self, answer: bytes, request: bytes) -> bytes:
        """``answer`` signed with the agent's own SIG(0) key, when it has one (the child
        checks it against the KEY published at the DSYNC target). The signature covers
        the ``request`` as received too (RFC 2931 sec. 3.1), so it cannot be replayed as
        the answer to another request."""
        if self.own_key is None:
            return answer
        return sig0.sign(answer, self.own_key, now=int(self.clock()), request=request)

    async def children(self) -> list[str]:
        """The parent's delegations, re-read at most once a second."""
        at, names = self._children
        if time.monotonic() - at > CHILDREN_CACHE:
            names = (await read_parent(self.api, self.zone)).children
            self._children = (time.monotonic(), names)
        return names

    # -- scheduled scans ----------------------------------------------------------------

    async def scan_all(self, actor: str = "scan") -> dict[str, dict[str, str]]:
        """One scan of every delegated child (what the schedule runs; another ``actor``
        scans every address in full, as after a NOTIFY)."""
        parent = await read_parent(self.api, self.zone)
        gate = asyncio.Semaphore(SCAN_CONCURRENCY)
        results: dict[str, dict[str, str]] = {}

        async def one(child: str) -> None:
            async with gate:
                try:
                    results[child] = await self.scanner.scan(child, actor, parent=parent)
                except Exception as exc:  # one child's failure never stops the round
                    log.warning("parent agent: scan of %s failed: %s", child, exc)
                    results[child] = {"error": str(exc)}

        await asyncio.gather(*(one(c) for c in parent.children))
        return results

    async def _schedule(self) -> None:
        interval = self.config.scan_interval.total_seconds()
        while True:
            started = time.monotonic()
            try:
                await self.scan_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the parent API is down, say: try next round
                log.warning("parent agent: scan round failed: %s", exc)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    # -- requests -----------------------------------------------------------------------

    async def handle(self, data: bytes, source: Source, tcp: bool) -> bytes | None:
        head = wire.header(data)
        if head is None:
            return None
        actor = f"{'tcp' if tcp else 'udp'}:{source[0]}:{source[1]}"
        if not self.per_source.allow(source[0]):
            self._note_flood(source[0])
            return wire.error_answer(head, dns.rcode.REFUSED, dns.edns.EDECode.OTHER,
                                     "rate limit for this source exceeded; retry later")
        if head.opcode == dns.opcode.UPDATE:
            return await self.handle_update(data, head, actor, tcp)
        if head.opcode not in (dns.opcode.NOTIFY, dns.opcode.QUERY):
            return wire.error_answer(head, dns.rcode.NOTIMP, dns.edns.EDECode.NOT_SUPPORTED,
                                     f"opcode {wire.opcode_name(head)} is not served here")
        request = wire.parse(data)
        if isinstance(request, str):
            return wire.error_answer(head, dns.rcode.FORMERR, dns.edns.EDECode.OTHER, request)
        if head.opcode == dns.opcode.NOTIFY:
            return (await self.notify.handle(request, actor)).to_wire()

        return await self.handle_query(request, actor, data)

    def _note_flood(self, address: str) -> None:
        """Log a rate-limited source at most once a minute (never in the history: a flood
        must not be able to fill it)."""
        now = time.monotonic()
        if now - self._flood_noted.get(address, -1e9) >= FLOOD_LOG_EVERY:
            self._flood_noted[address] = now
            if len(self._flood_noted) > 10000:
                self._flood_noted.clear()
            log.warning("parent agent: %s is over the rate limit; answering REFUSED", address)

    async def handle_query(self, request: dns.message.Message, actor: str, data: bytes
                           ) -> bytes:
        """KeyState inquiries; other queries are not served (the parent's nameservers
        serve the zone)."""
        asked = keystate.inquiry(request)
        if isinstance(asked, str):
            return wire.answer_to(request, dns.rcode.FORMERR, dns.edns.EDECode.OTHER,
                                  asked).to_wire()
        if asked is None:
            return wire.answer_to(request, dns.rcode.REFUSED,
                                  dns.edns.EDECode.NOT_AUTHORITATIVE,
                                  "this is the parent's UPDATE/NOTIFY receiver; ask the "
                                  "parent's nameservers", authoritative=False).to_wire()
        reply, said = keystate.answer(request, asked, self.trust, await self.children())
        child = request.question[0].name.to_text() if request.question else "-"
        log.info("parent agent: KeyState for %s from %s: %s", child, actor, said)
        return self.sign_answer(reply.to_wire(), data)

    async def handle_update(self, data: bytes, head: wire.Header, actor: str, tcp: bool
                            ) -> bytes | None:
        return await self.updates.handle(data, head, actor, tcp)


def own_key(config: ParentAgentConfig) -> sig0.Sig0Key | None:
    """The agent's SIG(0) key for its answers (generated at first start) from
    ``key_directory``; None without one."""
    if config.key_directory is None:
        return None
    from providers.sig0keys import Sig0KeyStore

    store = Sig0KeyStore(config.key_directory, create=True)
    keys = store.list_keys(config.target)
    stored = keys[-1] if keys else store.generate(config.target)
    return store.load(stored.key_id)
