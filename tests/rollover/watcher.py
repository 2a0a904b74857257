"""An independent RFC 8901 invariant watcher for the rollover tests.

It deliberately shares no code with the product (orchestrator/decide/invariant.py is what is
being tested): a background thread that, every ``interval`` seconds, asks every nameserver
of every provider directly (RD off, DO on, TCP fallback) for the zone's DNSKEY and SOA,
and every parent server for the zone's DS. It remembers every DNSKEY RRset and every DS
RRset it has seen, each until (time last seen + its TTL) -- as long as a resolver may hold
it in its cache -- and checks at each round (design.md sec. 1):

1. every provider's current SOA RRSIGs validate under EVERY remembered, unexpired DNSKEY
   RRset, whichever provider served it;
2. every provider's current DNSKEY RRset is signed (validly) by a key matching a DS of
   EVERY remembered, unexpired DS RRset.

Times are wall-clock (``time.time()``) so they compare with the product's history. A
check uses the instant of the answer it checks: a remembered RRset counts while its
expiry is later than that instant. The watcher errs on the lenient side only by the
length of one round (an RRset may be served up to one round after the watcher last saw
it), never the strict one, so every breach it reports is real.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class Breach:
    """One violation seen at one instant."""

    at: float  # wall-clock time of the answer that breaks the invariant
    round: int
    kind: str  # "signature" (check 1) or "ds" (check 2) or "unsigned"
    provider: str  # whose current answer fails
    server: str  # "address:port" of that provider's nameserver
    tags: tuple[int, ...]  # key tags of the RRSIGs that provider serves now
    cached_tags: tuple[int, ...]  # key tags in the remembered RRset it fails against
    cached_from: str  # who served that RRset, when first/last seen, until when remembered
    detail: str = ""

    def __str__(self) -> str:
        return (f"[round {self.round} t={self.at:.3f}] {self.kind}: {self.provider} "
                f"({self.server}) RRSIG tags {list(self.tags)} fail against "
                f"{list(self.cached_tags)} {self.cached_from}: {self.detail}")


@dataclass
class _Remembered:
    rrset: dns.rrset.RRset
    ttl: int
    first_seen: float
    last_seen: float
    sources: set[str] = field(default_factory=set)

    @property
    def expires(self) -> float:
        return self.last_seen + self.ttl

    def describe(self) -> str:
        return (f"(served by {', '.join(sorted(self.sources))}; seen "
                f"{self.first_seen:.3f}..{self.last_seen:.3f}, cached until "
                f"{self.expires:.3f})")


@dataclass(frozen=True)
class _Answer:
    at: float
    rrset: dns.rrset.RRset | None
    sigs: dns.rrset.RRset | None


def _tags(sigs: dns.rrset.RRset | None) -> tuple[int, ...]:
    return tuple(sorted({int(s.key_tag) for s in sigs})) if sigs else ()


def _key_tags(keys: dns.rrset.RRset) -> tuple[int, ...]:
    return tuple(sorted(dns.dnssec.key_id(k) for k in keys))


def _ds_tags(ds: dns.rrset.RRset) -> tuple[int, ...]:
    return tuple(sorted(int(d.key_tag) for d in ds))


def _identity(rrset: dns.rrset.RRset) -> frozenset[bytes]:
    return frozenset(rd.to_digestable() for rd in rrset)


class Watcher:
    """``Watcher(zone, {"p0": [(addr, port)], ...}, [(parent_addr, port)])``;
    ``start()``, then ``stop()`` -> (breaches, rounds)."""

    def __init__(self, zone: str, servers: dict[str, list[Endpoint]],
                 parent: list[Endpoint], *, interval: float = 0.15,
                 timeout: float = 1.0) -> None:
        self.zone = dns.name.from_text(zone)
        self.servers = servers
        self.parent = parent
        self.interval = interval
        self.timeout = timeout
        self.breaches: list[Breach] = []
        self.errors: list[str] = []
        self.rounds = 0
        self.round_seconds: list[float] = []
        self.dnskey_sets: dict[frozenset[bytes], _Remembered] = {}
        self.ds_sets: dict[frozenset[bytes], _Remembered] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.started_at = 0.0
        self.stopped_at = 0.0

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
        """Block until ``n`` more rounds have completed."""
        target = self.rounds + n
        deadline = time.monotonic() + timeout
        while self.rounds < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"watcher made no {n} rounds in {timeout} s")
            time.sleep(0.02)

    def summary(self) -> str:
        return (f"{self.rounds} rounds in {self.stopped_at - self.started_at:.1f} s "
                f"({self.rate:.1f}/s), {len(self.breaches)} breaches, "
                f"{len(self.errors)} query errors, {len(self.dnskey_sets)} DNSKEY and "
                f"{len(self.ds_sets)} DS RRsets remembered")

    # ------------------------------------------------------------------ querying

    def _ask(self, where: Endpoint, qname: dns.name.Name, rdtype: str) -> _Answer:
        q = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
        q.flags &= ~dns.flags.RD
        resp, _ = dns.query.udp_with_fallback(q, where[0], port=where[1],
                                              timeout=self.timeout)
        at = time.time()
        if resp.rcode() != dns.rcode.NOERROR:
            raise dns.exception.DNSException(
                f"{rdtype} answered {dns.rcode.to_text(resp.rcode())}")
        rtype = dns.rdatatype.from_text(rdtype)
        rrset = resp.get_rrset(resp.answer, qname, dns.rdataclass.IN, rtype)
        sigs = resp.get_rrset(resp.answer, qname, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                              rtype)
        return _Answer(at, rrset, sigs)

    def _remember(self, store: dict[frozenset[bytes], _Remembered],
                  rrset: dns.rrset.RRset, at: float, source: str) -> None:
        key = _identity(rrset)
        seen = store.get(key)
        if seen is None:
            store[key] = _Remembered(rrset, int(rrset.ttl), at, at, {source})
        else:
            seen.last_seen = max(seen.last_seen, at)
            seen.ttl = max(seen.ttl, int(rrset.ttl))
            seen.sources.add(source)

    # ------------------------------------------------------------------ one round

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.round()
            except Exception as exc:  # a watcher bug must show, not kill the thread
                self.errors.append(f"round {self.rounds}: {type(exc).__name__}: {exc}")
            self.round_seconds.append(time.monotonic() - started)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def round(self) -> None:
        with self._lock:
            self.rounds += 1
            n = self.rounds
            keys: dict[tuple[str, Endpoint], _Answer] = {}
            soas: dict[tuple[str, Endpoint], _Answer] = {}
            for provider, endpoints in self.servers.items():
                for ep in endpoints:
                    try:
                        keys[provider, ep] = self._ask(ep, self.zone, "DNSKEY")
                        soas[provider, ep] = self._ask(ep, self.zone, "SOA")
                    except (dns.exception.DNSException, OSError) as exc:
                        self.errors.append(f"round {n}: {provider} {ep[0]}:{ep[1]}: {exc}")
            for ep in self.parent:
                try:
                    ds = self._ask(ep, self.zone, "DS")
                except (dns.exception.DNSException, OSError) as exc:
                    self.errors.append(f"round {n}: parent {ep[0]}:{ep[1]}: {exc}")
                    continue
                if ds.rrset is not None:
                    self._remember(self.ds_sets, ds.rrset, ds.at, f"parent {ep[0]}:{ep[1]}")
            for (provider, ep), ans in keys.items():
                if ans.rrset is not None:
                    self._remember(self.dnskey_sets, ans.rrset, ans.at,
                                   f"{provider} {ep[0]}:{ep[1]}")
            for (provider, ep), ans in soas.items():
                self._check_signatures(n, provider, ep, ans)
            for (provider, ep), ans in keys.items():
                self._check_ds(n, provider, ep, ans)

    def _breach(self, **kw: object) -> None:
        self.breaches.append(Breach(**kw))  # type: ignore[arg-type]

    def _check_signatures(self, n: int, provider: str, ep: Endpoint, soa: _Answer) -> None:
        server = f"{ep[0]}:{ep[1]}"
        if soa.rrset is None or not soa.sigs:
            self._breach(at=soa.at, round=n, kind="unsigned", provider=provider, server=server,
                         tags=_tags(soa.sigs), cached_tags=(), cached_from="",
                         detail="no signed SOA in the answer")
            return
        for cached in self.dnskey_sets.values():
            if cached.expires <= soa.at:
                continue
            try:
                dns.dnssec.validate(soa.rrset, soa.sigs, {self.zone: cached.rrset})
            except dns.dnssec.ValidationFailure as exc:
                self._breach(at=soa.at, round=n, kind="signature", provider=provider,
                             server=server, tags=_tags(soa.sigs),
                             cached_tags=_key_tags(cached.rrset),
                             cached_from="DNSKEY RRset " + cached.describe(), detail=str(exc))

    def _check_ds(self, n: int, provider: str, ep: Endpoint, keys: _Answer) -> None:
        server = f"{ep[0]}:{ep[1]}"
        if keys.rrset is None or not keys.sigs:
            self._breach(at=keys.at, round=n, kind="unsigned", provider=provider,
                         server=server, tags=_tags(keys.sigs), cached_tags=(),
                         cached_from="", detail="no signed DNSKEY RRset in the answer")
            return
        for cached in self.ds_sets.values():
            if cached.expires <= keys.at:
                continue
            trusted = [k for k in keys.rrset if any(_matches(self.zone, k, d)
                                                    for d in cached.rrset)]
            detail = ""
            if not trusted:
                detail = "no DNSKEY matches a DS of this DS RRset"
            else:
                anchor = dns.rrset.from_rdata_list(self.zone, keys.rrset.ttl, trusted)
                try:
                    dns.dnssec.validate(keys.rrset, keys.sigs, {self.zone: anchor})
                except dns.dnssec.ValidationFailure as exc:
                    detail = f"no RRSIG by a DS-matching key validates: {exc}"
            if detail:
                self._breach(at=keys.at, round=n, kind="ds", provider=provider,
                             server=server, tags=_tags(keys.sigs),
                             cached_tags=_ds_tags(cached.rrset),
                             cached_from="DS RRset " + cached.describe(), detail=detail)


def _matches(zone: dns.name.Name, key: object, ds: object) -> bool:
    try:
        return bool(dns.dnssec.make_ds(zone, key, ds.digest_type) == ds)  # type: ignore[arg-type,attr-defined]
    except (dns.exception.UnsupportedAlgorithm, ValueError):
        return False
