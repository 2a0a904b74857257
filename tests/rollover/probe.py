"""The Unbound checker: a thread asking the lab's validating resolver for names of the
zone every ``interval`` seconds; every answer must be NOERROR, carry the asked RRset and
have the AD bit. Unbound hides some breaches by retrying another server (docs/lab.md),
so this complements the invariant watcher; it does not replace it."""

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


@dataclass(frozen=True)
class Failure:
    at: float
    qname: str
    rdtype: str
    problem: str

    def __str__(self) -> str:
        return f"t={self.at:.3f} {self.qname} {self.rdtype}: {self.problem}"


class ResolverProbe:
    def __init__(self, resolver: tuple[str, int], zone: str, *,
                 interval: float = 0.2, timeout: float = 3.0) -> None:
        self.resolver = resolver
        self.questions = [(f"www.{zone}", "A"), (zone, "DNSKEY")]
        self.interval = interval
        self.timeout = timeout
        self.failures: list[Failure] = []
        self.answers = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ResolverProbe:
        self._thread = threading.Thread(target=self._run, name="resolver probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> tuple[list[Failure], int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "resolver probe did not stop"
        return list(self.failures), self.answers

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for qname, rdtype in self.questions:
                self._ask(qname, rdtype)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _ask(self, qname: str, rdtype: str) -> None:
        q = dns.message.make_query(qname, rdtype, want_dnssec=True)
        q.flags |= dns.flags.AD
        try:
            resp = dns.query.udp(q, self.resolver[0], port=self.resolver[1],
                                 timeout=self.timeout)
        except (dns.exception.DNSException, OSError) as exc:
            self.failures.append(Failure(time.time(), qname, rdtype, f"no answer: {exc!r}"))
            return
        self.answers += 1
        name = dns.name.from_text(qname)
        if resp.rcode() != dns.rcode.NOERROR:
            problem = dns.rcode.to_text(resp.rcode())
        elif not resp.flags & dns.flags.AD:
            problem = "answer without the AD bit"
        elif resp.get_rrset(resp.answer, name, dns.rdataclass.IN,
                            dns.rdatatype.from_text(rdtype)) is None:
            problem = "no answer RRset"
        else:
            return
        self.failures.append(Failure(time.time(), qname, rdtype, problem))
