"""The SIG(0)-signed DNS UPDATE receiver (RFC 2136, RFC 2931, RFC 3007;
draft-ietf-dnsop-delegation-mgmt-via-ddns): parse, authenticate, check the policy, apply
to the parent zone, answer, record.

Answers (each with an Extended DNS Error saying why, RFC 8914; nothing applied unless
NOERROR): malformed -> FORMERR; zone section not the parent zone -> NOTAUTH; unsigned ->
REFUSED; unknown key, bad signature, signature outside the time window -> the SIG(0)
error's rcode (NOTAUTH; BADKEY/BADSIG/BADTIME in the EDE text); the same signed message
again -> REFUSED (replay); over the per-key rate -> REFUSED; a change outside the child's
delegation -> REFUSED; a delegation the change would break -> REFUSED; the provider API
failing -> SERVFAIL. A self-signed UPDATE adding the signer's own KEY, over TCP, starts
the KEY bootstrap and is answered NOERROR ("bootstrap started"); the same UPDATE signed
by a *trusted* key of the child is its SIG(0) key roll, applied at once (trust moves to
the key it adds; a delete of the KEY RRset drops the old ones). The TTLs written are the
parent's (the existing RRset's, else ``ttl``), never the child's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import dns.dnssec
import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.KEY import KEY

from core import sig0
from core.errors import MultisignerError
from orchestrator.decide import parent_policy as policy
from orchestrator.parent_agent import wire
from orchestrator.parent_agent.bootstrap import Bootstrapper
from orchestrator.parent_agent.history import Recorder
from orchestrator.parent_agent.parent_zone import ChildLocks, ParentView, read_parent
from orchestrator.parent_agent.ratelimit import RateLimiter
from orchestrator.parent_agent.trust import TrustStore, canonical, parse_key
from providers.base import ApiRRset
from providers.powerdns import PowerDNSProvider
from providers.powerdns_rrsets import replace_rrsets

EDE = dns.edns.EDECode
SIG0_EDE = {"BADKEY": EDE.DNSKEY_MISSING, "BADSIG": EDE.DNSSEC_BOGUS,
            "BADTIME": EDE.SIGNATURE_EXPIRED, "UNSIGNED": EDE.PROHIBITED}


class Replays:
    """Signatures already accepted, remembered until they expire (plus the time window):
    within its validity, a captured UPDATE sent again is refused."""

    def __init__(self) -> None:
        self._seen: dict[bytes, float] = {}

    def seen(self, signature: bytes, until: float, now: float) -> bool:
        if len(self._seen) > 10000:
            self._seen = {s: t for s, t in self._seen.items() if t > now}
        if self._seen.get(signature, 0.0) > now:
            return True
        self._seen[signature] = until
        return False


@dataclass
class Outcome:
    rcode: dns.rcode.Rcode
    state: str  # accepted / refused / ignored
    reason: str
    ede: dns.edns.EDECode | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


class Refusal(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def refuse(rcode: dns.rcode.Rcode, ede: dns.edns.EDECode, reason: str) -> Refusal:
    return Refusal(Outcome(rcode, "refused", reason, ede))


@dataclass
class UpdateReceiver:
    zone: str
    api: PowerDNSProvider
    recorder: Recorder
    trust: TrustStore
    bootstrapper: Bootstrapper
    per_key: RateLimiter
    children: Callable[[], Awaitable[list[str]]]
    ttl: int
    window: int
    sign_answer: Callable[[bytes, bytes], bytes]
    locks: ChildLocks
    clock: Callable[[], float] = time.time
    replays: Replays = field(default_factory=Replays)

    async def handle(self, data: bytes, head: wire.Header, actor: str, tcp: bool) -> bytes:
        evidence: dict[str, Any] = {}
        request: dns.message.Message | None = None
        try:
            signed = self._parse(data)
            request = signed.message
            evidence.update(self._describe(signed))
            outcome = await self._process(signed, evidence, tcp)
        except Refusal as exc:
            outcome = exc.outcome
        except MultisignerError as exc:  # the provider API failed: nothing was applied
            outcome = Outcome(dns.rcode.SERVFAIL, "refused", f"parent zone not updated: {exc}",
                              EDE.NETWORK_ERROR)
        outcome.evidence = {**evidence, **outcome.evidence}
        await self.recorder.record("update", outcome.state, actor=actor,  # type: ignore[arg-type]
                                   reason=outcome.reason, evidence=outcome.evidence)
        if request is None:
            return wire.error_answer(head, outcome.rcode, outcome.ede, outcome.reason)
        answer = wire.answer_to(request, outcome.rcode, outcome.ede, outcome.reason,
                                authoritative=False)
        return self.sign_answer(answer.to_wire(), data)

    def _parse(self, data: bytes) -> sig0.Signed:
        try:
            return sig0.parse(data)
        except sig0.Sig0Error as exc:
            raise refuse(dns.rcode.FORMERR, EDE.OTHER, exc.detail) from None

    @staticmethod
    def _describe(signed: sig0.Signed) -> dict[str, Any]:
        if signed.sig is None:
            return {"key": None}
        return {"signer": str(signed.signer),
                "key": f"{dns.dnssec.algorithm_to_text(signed.sig.algorithm)}/"
                       f"{signed.key_tag}"}

    async def _process(self, signed: sig0.Signed, evidence: dict[str, Any], tcp: bool
                       ) -> Outcome:
        message = signed.message
        self._check_zone(message)
        if signed.sig is None or signed.signer is None:
            raise refuse(dns.rcode.REFUSED, EDE.PROHIBITED, "unsigned UPDATE: sign it with "
                         "SIG(0) by the child's KEY (RFC 2931)")
        child = signed.signer.to_text().lower()
        evidence["child"] = child
        if child not in await self.children():
            raise refuse(dns.rcode.NOTAUTH, EDE.NOT_AUTHORITATIVE,
                         f"{child} is not delegated from {self.zone}: its key cannot "
                         "change anything here")
        if message.sections[1]:
            raise refuse(dns.rcode.REFUSED, EDE.NOT_SUPPORTED,
                         "prerequisites are not supported; send the changes only")
        try:
            changes = policy.changes_of(message.sections[2])
        except policy.BadUpdate as exc:
            raise refuse(dns.rcode.FORMERR, EDE.OTHER, str(exc)) from None
        evidence["change"] = [c.text() for c in changes]
        trusted = self.trust.trusted(child)
        bootstrap = self._bootstrap_key(child, changes, signed, trusted, tcp)
        if bootstrap is not None:
            return bootstrap
        self._verify(signed, trusted, child)
        async with self.locks.hold(child):
            return await self._apply(child, changes)

    def _check_zone(self, message: dns.message.Message) -> None:
        zone = message.sections[0]
        if (len(zone) != 1 or zone[0].rdtype != dns.rdatatype.SOA
                or zone[0].rdclass != dns.rdataclass.IN):
            raise refuse(dns.rcode.FORMERR, EDE.OTHER,
                         "the zone section must hold exactly one IN SOA entry")
        if zone[0].name.to_text().lower() != self.zone:
            raise refuse(dns.rcode.NOTAUTH, EDE.NOT_AUTHORITATIVE,
                         f"this agent updates {self.zone} only, not {zone[0].name}")

    def _verify(self, signed: sig0.Signed, keys: list[KEY], child: str) -> None:
        now = self.clock()
        try:
            sig0.verify(signed, keys, now=int(now), name=signed.signer, fudge=self.window)
        except sig0.Sig0Error as exc:
            hint = (" (no trusted KEY for it: publish the KEY at the child apex and send a "
                    "self-signed UPDATE adding it, to bootstrap)" if exc.reason == "BADKEY"
                    else "")
            raise refuse(exc.rcode, SIG0_EDE.get(exc.reason, EDE.OTHER),
                         f"{exc.reason}: {exc.detail}{hint}") from None
        assert signed.sig is not None
        # Counted once the signature is known good: forged messages naming a child's key
        # cannot use up that key's budget (the per-source limit has already applied).
        if not self.per_key.allow(f"{child}/{signed.key_tag}"):
            raise refuse(dns.rcode.REFUSED, EDE.OTHER, "rate limit for this key exceeded")
        until = float(signed.sig.expiration) + self.window
        if self.replays.seen(signed.sig.signature, until, now):
            raise refuse(dns.rcode.REFUSED, EDE.PROHIBITED,
                         f"replayed UPDATE: this signature of {child} was already used")

    def _bootstrap_key(self, child: str, changes: list[policy.Change], signed: sig0.Signed,
                       trusted: list[KEY], tcp: bool) -> Outcome | None:
        """A self-signed request to trust the KEY it adds (seed 004); None otherwise."""
        # Exactly one KEY added at the apex, possibly after deleting the KEY RRset (the
        # "replace" form children send); nothing else in the UPDATE.
        adds = [c for c in changes if c.op == "add" and c.rdtype == "KEY" and c.name == child]
        others = [c for c in changes if c not in adds]
        if (len(adds) != 1 or adds[0].rdata is None
                or any(c.rdtype != "KEY" or c.name != child or c.op == "add" for c in others)):
            return None
        key = parse_key(adds[0].rdata)
        if any(canonical(k) == canonical(key) for k in trusted):
            return None  # already trusted: an ordinary signed UPDATE (nothing to apply)
        assert signed.sig is not None
        if (signed.key_tag != sig0.key_tag_of(key)
                or signed.sig.algorithm != key.algorithm):
            # Signed by another key, not by the one it adds: a key roll, which only a
            # trusted key may make (verified and applied as an ordinary signed UPDATE:
            # _apply_keys moves trust to the key it adds), never a bootstrap.
            return None
        self._verify(signed, [key], child)  # self-signed, else refused like any bad sig
        if not tcp:  # a spoofed source address is much harder over TCP
            raise refuse(dns.rcode.REFUSED, EDE.PROHIBITED,
                         "send the KEY bootstrap UPDATE over TCP")
        text = canonical(key)
        record = self.trust.get(child, text)
        if record is not None and record.state == "refused":
            # A new request after a refusal starts over (the child may have fixed its KEY).
            self.trust.remove(child, text)
        started = self.bootstrapper.start(child, text, f"key:{child}")
        why = "KEY bootstrap started" if started else "KEY bootstrap already under way"
        return Outcome(dns.rcode.NOERROR, "accepted", f"{why}; follow it with KeyState",
                       EDE.OTHER, {"bootstrap": text})

    async def _apply(self, child: str, changes: list[policy.Change]) -> Outcome:
        parent = await read_parent(self.api, self.zone)
        verdict = policy.check(self.zone, child, parent.children, changes)
        if not verdict.allowed:
            raise refuse(dns.rcode.REFUSED, EDE.PROHIBITED, verdict.reason)
        key_changes = [c for c in changes if c.rdtype == "KEY"]
        zone_changes = [c for c in changes if c.rdtype != "KEY"]
        current = {(n, t): frozenset(parent.records(n, t)) for n, t in verdict.touched}
        after = policy.apply(current, zone_changes)
        problem = policy.check_result(child, after, self._glue_after(child, parent, after))
        if problem:
            raise refuse(dns.rcode.REFUSED, EDE.PROHIBITED, problem)
        writes = [ApiRRset(n, t, parent.ttl(n, t, self.ttl), tuple(sorted(v)))
                  for (n, t), v in after.items() if v != current.get((n, t))]
        if writes:
            await replace_rrsets(self.api, self.zone, writes)
        self._apply_keys(child, key_changes)
        if not writes and not key_changes:
            return Outcome(dns.rcode.NOERROR, "ignored", "already in effect")
        return Outcome(dns.rcode.NOERROR, "accepted",
                       f"applied {len(writes)} RRset(s) to {self.zone}", None,
                       {"rrsets": {f"{w.name} {w.rdtype}": list(w.records) for w in writes}})

    def _glue_after(self, child: str, parent: ParentView,
                    after: dict[policy.RRKey, frozenset[str]]) -> dict[str, bool]:
        ns = after.get((child, "NS"), frozenset(parent.records(child, "NS")))
        inside = [n for n in policy.ns_targets(ns)
                  if dns.name.from_text(n).is_subdomain(dns.name.from_text(child))]
        return {n: bool(after.get((n, "A"), frozenset(parent.records(n, "A")))
                        or after.get((n, "AAAA"), frozenset(parent.records(n, "AAAA"))))
                for n in inside}

    def _apply_keys(self, child: str, changes: list[policy.Change]) -> None:
        """A trusted key may add its successor and remove keys (SIG(0) key rollover)."""
        for change in changes:
            if change.op == "add" and change.rdata:
                self.trust.set(child, change.rdata, "trusted", "signed-update",
                               "added by an UPDATE signed with a trusted key")
            elif change.op == "delete-rr" and change.rdata:
                self.trust.remove(child, change.rdata)
            elif change.op == "delete-rrset":
                for key in self.trust.trusted(child):
                    self.trust.remove(child, canonical(key))

