"""An independent RFC 8901 invariant watcher for the rollover and signer tests.

It deliberately shares no code with the product (orchestrator/decide/invariant.py is what
is being tested): a background thread that, every ``interval`` seconds, asks every
nameserver of every provider directly (RD off, DO on, TCP fallback) for the zone's DNSKEY
RRset and its signed data RRsets (the SOA unless told otherwise), and every parent server
for the zone's DS RRset, and feeds every answer to a model of resolver caches
(cachemodel.py). After each round it checks what RFC 7583 requires: a resolver, or a
chain of forwarding caches, may hold at one instant ANY DS RRset, ANY DNSKEY RRset and ANY
signed data RRset that anyone served within its TTL, and EVERY such combination must
validate. That catches a ZSK withdrawn while data signed with it is still cached, and a DS
swapped before every cacheable DNSKEY RRset carries the new KSK, which checking only
today's answers against remembered RRsets misses.

Times are wall-clock (``time.time()``) so they compare with the product's history. An
RRset counts as cacheable until the last time the watcher saw it served plus its TTL; it
may have been served up to one round later, so the watcher errs on the lenient side by
the length of one round, never the strict one: every breach it reports is real.

Tests without servers feed recorded answers with :meth:`Watcher.observe` and check them
with :meth:`Watcher.check`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from rollover.cachemodel import CacheModel, Identity, Served, Source, Violation

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class Breach:
    """One violation seen at one instant.

    ``kind`` "signature": a data RRset ``provider`` served does not validate under a
    DNSKEY RRset (``cached_from``) a resolver may hold with it; "ds": a DNSKEY RRset
    ``provider`` served does not chain to a DS RRset (``cached_from``) a resolver may hold
    with it; "unsigned": ``provider`` answered without the RRset or its RRSIGs.
    ``combination`` names the DS, DNSKEY and data RRsets, who served them and when."""

    at: float  # the instant at which a resolver may hold the failing combination
    round: int
    kind: str
    provider: str  # who served the RRset that fails (comma-separated if several did)
    server: str  # "address:port" of the server(s) that served it
    tags: tuple[int, ...]  # key tags of the RRSIGs over the RRset that fails
    cached_tags: tuple[int, ...]  # key tags in the RRset it fails against
    cached_from: str  # that RRset: who served it, when first/last, until when cacheable
    detail: str = ""
    combination: str = ""

    def __str__(self) -> str:
        text = (f"[round {self.round} t={self.at:.3f}] {self.kind}: {self.provider} "
                f"({self.server}) RRSIG tags {list(self.tags)} fail against "
                f"{list(self.cached_tags)} {self.cached_from}: {self.detail}")
        return text + (f"\n    combination: {self.combination}" if self.combination else "")


def breach_of(violation: Violation, round_: int) -> Breach:
    """The report of one failing pair, naming the whole combination."""
    failing: Served | None
    against: Served | None
    if violation.kind == "ds":
        failing, against = violation.dnskey, violation.ds
    else:
        failing, against = violation.data, violation.dnskey
    assert failing is not None and against is not None
    return Breach(at=violation.at, round=round_, kind=violation.kind,
                  provider=failing.providers, server=failing.servers,
                  tags=failing.sig_tags, cached_tags=against.tags,
                  cached_from=against.describe(), detail=violation.detail,
                  combination=violation.combination())


@dataclass(frozen=True)
class _Answer:
    at: float
    rrset: dns.rrset.RRset | None
    sigs: dns.rrset.RRset | None


class Watcher:
    """``Watcher(zone, {"p0": [(addr, port)], ...}, [(parent_addr, port)])``;
    ``start()``, then ``stop()`` -> (breaches, rounds)."""

    def __init__(self, zone: str, servers: dict[str, list[Endpoint]],
                 parent: list[Endpoint], *, interval: float = 0.15,
                 timeout: float = 1.0, data_types: tuple[str, ...] = ("SOA",)) -> None:
        self.zone = dns.name.from_text(zone)
        self.servers = servers
        self.parent = parent
        self.interval = interval
        self.timeout = timeout
        self.data_types = data_types
        self.model = CacheModel(self.zone)
        self.breaches: list[Breach] = []
        self.errors: list[str] = []
        self.rounds = 0  # rounds started
        self.completed = 0  # rounds finished
        self.round_seconds: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._round_done = threading.Condition()
        self.started_at = 0.0
        self.stopped_at = 0.0

    @property
    def dnskey_sets(self) -> dict[Identity, Served]:
        return self.model.dnskey_sets

    @property
    def ds_sets(self) -> dict[Identity, Served]:
        return self.model.ds_sets

    @property
    def data_sets(self) -> dict[Identity, Served]:
        return self.model.data_sets

    # ------------------------------------------------------------------ life cycle

    def start(self) -> Watcher:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name=f"watcher {self.zone}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> tuple[list[Breach], int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "watcher thread did not stop"
        self.stopped_at = time.time()
        return list(self.breaches), self.rounds

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def rate(self) -> float:
        """Rounds per second so far."""
        end = self.stopped_at or time.time()
        return self.rounds / max(1e-9, end - self.started_at)

    def wait_rounds(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``n`` more rounds have completed (woken by each round's end)."""
        deadline = time.monotonic() + timeout
        with self._round_done:
            target = self.completed + n
            while self.completed < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"watcher made no {n} rounds in {timeout} s")
                self._round_done.wait(left)

    def summary(self) -> str:
        return (f"{self.rounds} rounds in {self.stopped_at - self.started_at:.1f} s "
                f"({self.rate:.1f}/s), {len(self.breaches)} breaches, "
                f"{len(self.errors)} query errors, {len(self.ds_sets)} DS, "
                f"{len(self.dnskey_sets)} DNSKEY and {len(self.data_sets)} data RRsets "
                f"remembered")

    # ------------------------------------------------------------------ recorded answers

    def observe(self, source: Source, at: float, rrset: dns.rrset.RRset | None,
                sigs: dns.rrset.RRset | None, round_: int = 0) -> None:
        """``source`` = (provider or "parent", "address:port") answered ``rrset`` with
        ``sigs`` at ``at``. An answer without the RRset, or (but for a DS RRset) without
        RRSIGs, is a breach at once; a resolver could not validate it."""
        is_ds = rrset is not None and rrset.rdtype == dns.rdatatype.DS
        if rrset is not None and (sigs or is_ds):
            self.model.observe(source, at, rrset, sigs)
            return
        if source[0] == "parent":
            return  # no DS RRset (yet): nothing a resolver could cache to check against
        what = "RRset" if rrset is None else f"{dns.rdatatype.to_text(rrset.rdtype)} RRset"
        self.breaches.append(Breach(
            at=at, round=round_, kind="unsigned", provider=source[0], server=source[1],
            tags=tuple(sorted({int(s.key_tag) for s in sigs})) if sigs else (),
            cached_tags=(), cached_from="", detail=f"no signed {what} in the answer"))

    def check(self, now: float, round_: int = 0) -> list[Breach]:
        """Check every combination a resolver may hold at ``now``; the breaches found are
        also appended to ``breaches``."""
        found = [breach_of(v, round_) for v in self.model.check(now)]
        self.breaches.extend(found)
        return found

    # ------------------------------------------------------------------ querying

    def _ask(self, where: Endpoint, qname: dns.name.Name, rdtype: str) -> _Answer:
        q = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
        q.flags &= ~dns.flags.RD
        resp, _ = dns.query.udp_with_fallback(q, where[0], port=where[1],
                                              timeout=self.timeout)
        at = time.time()
        if resp.rcode() != dns.rcode.NOERROR:
            raise dns.exception.DNSException(  # type: ignore[no-untyped-call]
                f"{rdtype} answered {dns.rcode.to_text(resp.rcode())}")
        rtype = dns.rdatatype.from_text(rdtype)
        rrset = resp.get_rrset(resp.answer, qname, dns.rdataclass.IN, rtype)
        sigs = resp.get_rrset(resp.answer, qname, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                              rtype)
        return _Answer(at, rrset, sigs)

    # ------------------------------------------------------------------ one round

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.round()
            except Exception as exc:  # a watcher bug must show, not kill the thread
                self.errors.append(f"round {self.rounds}: {type(exc).__name__}: {exc}")
            self.round_seconds.append(time.monotonic() - started)
            with self._round_done:
                self.completed += 1
                self._round_done.notify_all()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def round(self) -> None:
        with self._lock:
            self.rounds += 1
            n = self.rounds
            for provider, endpoints in self.servers.items():
                for ep in endpoints:
                    server = f"{ep[0]}:{ep[1]}"
                    for rdtype in ("DNSKEY", *self.data_types):
                        try:
                            ans = self._ask(ep, self.zone, rdtype)
                        except (dns.exception.DNSException, OSError) as exc:
                            self.errors.append(f"round {n}: {provider} {server} "
                                               f"{rdtype}: {exc}")
                            continue
                        self.observe((provider, server), ans.at, ans.rrset, ans.sigs, n)
            for ep in self.parent:
                server = f"{ep[0]}:{ep[1]}"
                try:
                    ds = self._ask(ep, self.zone, "DS")
                except (dns.exception.DNSException, OSError) as exc:
                    self.errors.append(f"round {n}: parent {server}: {exc}")
                    continue
                self.observe(("parent", server), ds.at, ds.rrset, None, n)
            self.check(time.time(), n)
