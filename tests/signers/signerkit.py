"""Helpers of the signer add/remove tests: the rollover suite's invariant watcher restricted
to the providers resolvers can reach, the runbooks' state sequences and hold terms (written
out here, independently of runbooks/*.toml), what every provider serves at the apex, API
snapshots, and a phase-by-phase stepper to stop a process in a given state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import httpx
from rollover import rollkit
from rollover.rollkit import Result, ask, cli, endpoints, key_text, ok, when
from rollover.watcher import Endpoint, Watcher

from core.config import load_config
from multisigner_lab import Lab
from multisigner_lab.zones import ds_text
from orchestrator.engine.runner import Engine
from orchestrator.runtime import Runtime, holder_id
from state.store import StateStore

PHASES = rollkit.PHASES
ADD_STEPS = ("import-keys", "add-ds", "add-ns", "parent-ns", "cleanup")
REMOVE_STEPS = ("remove-ns", "drain", "remove-ds", "remove-keys")
ADD_ABORTS = {"import-keys": ("unimport",), "add-ds": ("revert-ds", "unimport-after-revert")}
# The hold of each step: docs/design-notes.md, "Steps per model" and the runbook texts.
# DNSKEY-Wait-Time = TTLkey, DS-Wait-Time = TTLds, NS-Wait-Time = TTLns.
HOLDS: dict[str, tuple[tuple[str, ...], str]] = {
    "import-keys": (("TTLkey",), "sum"),
    "add-ds": (("TTLds", "TTLkey"), "max"),
    "drain": (("TTLns", "TTLkey"), "sum"),
    "remove-ds": (("TTLds", "TTLsig"), "max"),
    "revert-ds": (("TTLds",), "sum"),
}
EVIDENCE_TTL = {"TTLkey": "key", "TTLsig": "sig", "TTLds": "ds", "TTLns": "ns"}
CSYNC = "0 1 NS"
# The steps with no keys, preconditions or hold: the engine persists them as act (which
# converges) and observe (whose transition enters the next step).
ONE_PASS = {"parent-ns", "cleanup", "remove-keys", "unimport", "unimport-after-revert"}


def phases(step: str) -> tuple[str, ...]:
    return ("act", "observe") if step in ONE_PASS else PHASES


def add_states() -> list[str]:
    return [f"{s}:{p}" for s in ADD_STEPS for p in phases(s)] + ["done"]


def remove_states() -> list[str]:
    return [f"{s}:{p}" for s in REMOVE_STEPS for p in phases(s)] + ["done"]


def aborted_add_states(during: str, reached: str) -> list[str]:
    """An add aborted in step ``during`` whose last main state was ``reached``."""
    main = [f"{s}:{p}" for s in ADD_STEPS for p in phases(s)]
    out = main[: main.index(reached) + 1]
    out += [f"abort:{s}:{p}" for s in ADD_ABORTS[during] for p in phases(s)]
    return [*out, "aborted"]


def lab_ttls(lab: Lab) -> dict[str, int]:
    """The TTL terms as the lab set them up (not as the product measured them)."""
    return {"TTLkey": lab.ttl, "TTLsig": lab.ttl, "TTLds": lab.ds_ttl,
            "TTLns": max(lab.ns_ttl, lab.ttl)}


# --------------------------------------------------------------------------- the watcher


def _ns_of(resp: dns.message.Message, zone: dns.name.Name) -> dns.rrset.RRset | None:
    for section in (resp.answer, resp.authority):
        rrset = resp.get_rrset(section, zone, dns.rdataclass.IN, dns.rdatatype.NS)
        if rrset is not None:
            return rrset
    return None


class ReachableWatcher(Watcher):
    """The rollover suite's watcher, checking only the providers a resolver can be sent to.

    Each round first asks the parent for the zone's delegation (its NS RRset) and every
    reachable provider for the NS RRset it serves (resolvers may use the child's NS RRset
    instead of the parent's), transitively. A provider named by one of them at time t with
    TTL T counts as reachable until t + T: a resolver may hold that NS RRset (and go on
    sending queries to the provider) that long. Only the reachable providers' answers are
    checked and remembered. So a joining provider is watched from the moment any NS RRset
    names it, and a leaving one until every NS RRset naming it may have expired."""

    def __init__(self, zone: str, servers: dict[str, list[Endpoint]], parent: list[Endpoint],
                 ns_names: dict[str, str], **kw: Any) -> None:
        super().__init__(zone, {}, parent, **kw)
        self.candidates = dict(servers)
        self.provider_of = {n.lower(): p for p, n in ns_names.items()}
        self.named_until: dict[str, float] = {}
        # (wall-clock time, providers watched from then on), one entry per change
        self.watched: list[tuple[float, tuple[str, ...]]] = []

    def _ns(self, where: Endpoint) -> tuple[float, dns.rrset.RRset | None]:
        q = dns.message.make_query(self.zone, "NS", payload=1232)
        q.flags &= ~dns.flags.RD
        resp, _ = dns.query.udp_with_fallback(q, where[0], port=where[1], timeout=self.timeout)
        return time.time(), _ns_of(resp, self.zone)

    def _named(self, at: float, rrset: dns.rrset.RRset | None) -> set[str]:
        out = set()
        for rd in rrset or ():
            provider = self.provider_of.get(rd.target.to_text().lower())
            if provider is not None:
                out.add(provider)
                self.named_until[provider] = max(self.named_until.get(provider, 0.0),
                                                 at + int(rrset.ttl))  # type: ignore[union-attr]
        return out

    def reach(self) -> tuple[str, ...]:
        now = time.time()
        for ep in self.parent:
            try:
                self._named(*self._ns(ep))
            except (dns.exception.DNSException, OSError) as exc:
                self.errors.append(f"round {self.rounds}: parent NS {ep[0]}:{ep[1]}: {exc}")
        todo = [p for p, until in self.named_until.items() if until > now]
        asked: set[str] = set()
        while todo:
            provider = todo.pop()
            if provider in asked or provider not in self.candidates:
                continue
            asked.add(provider)
            for ep in self.candidates[provider]:
                try:
                    todo += self._named(*self._ns(ep))
                except (dns.exception.DNSException, OSError) as exc:
                    self.errors.append(f"round {self.rounds}: {provider} NS "
                                       f"{ep[0]}:{ep[1]}: {exc}")
        return tuple(p for p in self.candidates if self.named_until.get(p, 0.0) > now)

    def round(self) -> None:
        watched = self.reach()
        if not self.watched or self.watched[-1][1] != watched:
            self.watched.append((time.time(), watched))
        self.servers = {p: self.candidates[p] for p in watched}
        super().round()

    def watched_at(self, at: float) -> tuple[str, ...]:
        current: tuple[str, ...] = ()
        for since, who in self.watched:
            if since > at:
                break
            current = who
        return current

    def ever_watched(self) -> set[str]:
        return {p for _, who in self.watched for p in who}


class Observed(rollkit.Observed):
    """rollkit's watcher + Unbound probe ``with`` block, with the reachable-only watcher."""

    def __init__(self, lab: Lab, zone: str, *, resolver: bool = True) -> None:
        super().__init__(lab, zone, resolver=resolver)
        self.watcher: ReachableWatcher = ReachableWatcher(
            zone, endpoints(lab), [(lab.parent.address, lab.parent.dns_port)], lab.ns_names)


# --------------------------------------------------------------------------- what is served


@dataclass(frozen=True)
class Apex:
    provider: str
    keys: frozenset[str]  # DNSKEY texts as the PowerDNS API writes them
    cds: frozenset[str]  # "tag alg digesttype hex"
    cdnskey: frozenset[str]
    ns: frozenset[str]
    csync: tuple[str, ...]


def apex(lab: Lab, zone: str, providers: list[str] | None = None) -> dict[str, Apex]:
    out = {}
    eps = endpoints(lab)
    for name in providers or [p.name for p in lab.providers]:
        ep = eps[name][0]
        found: dict[str, list[Any]] = {}
        for rdtype in ("DNSKEY", "CDS", "CDNSKEY", "NS", "CSYNC"):
            found[rdtype] = list(rollkit.rrset_of(ask(ep, zone, rdtype), zone, rdtype) or [])
        out[name] = Apex(
            name,
            frozenset(key_text(rd) for rd in found["DNSKEY"]),
            frozenset(f"{d.key_tag} {d.algorithm} {d.digest_type} {d.digest.hex()}"
                      for d in found["CDS"]),
            frozenset(key_text(rd) for rd in found["CDNSKEY"]),
            frozenset(rd.target.to_text().lower() for rd in found["NS"]),
            tuple(rd.to_text() for rd in found["CSYNC"]),
        )
    return out


def own_keys(lab: Lab, provider: str, zone: str) -> set[str]:
    """DNSKEY texts of ``provider``'s own published keys."""
    return {k.dnskey for k in lab.keys(provider, zone) if k.published}


def ksk_ds(lab: Lab, zone: str, providers: list[str]) -> list[str]:
    """One SHA-256 DS per active SEP key of each of ``providers``, as lab.parent_ds()."""
    return sorted(ds_text(zone, k.dnskey) for p in providers for k in lab.keys(p, zone)
                  if k.active and k.flags == 257)


def ns_of(lab: Lab, providers: list[str]) -> list[str]:
    return sorted(lab.ns_names[p].lower() for p in providers)


def api_snapshot(lab: Lab, zone: str) -> dict[str, Any]:
    """Every provider's rrsets and own keys of ``zone`` ("absent" where it has no zone)."""
    snap: dict[str, Any] = {}
    for p in lab.providers:
        with lab.pdns_api(p.name) as api:
            z = api.get(f"/zones/{zone}")
            if z.status_code in (404, 422):
                snap[p.name] = "absent"
                continue
            z.raise_for_status()
            keys = api.get(f"/zones/{zone}/cryptokeys")
            keys.raise_for_status()
        snap[p.name] = {
            "rrsets": sorted((r["name"], r["type"], r["ttl"],
                              tuple(sorted(c["content"] for c in r["records"])))
                             for r in z.json()["rrsets"]),
            "keys": sorted((k["id"], k["active"], k["published"], k["dnskey"])
                           for k in keys.json()),
        }
    return snap


def delete_zone(lab: Lab, provider: str, zone: str) -> None:
    with lab.pdns_api(provider) as api:
        resp: httpx.Response = api.delete(f"/zones/{zone}")
        assert resp.status_code == 204, resp.text


# --------------------------------------------------------------------------- the controller


def status(config: Path, zone: str) -> dict[str, Any]:
    data: dict[str, Any] = ok(cli(config, "status", zone, "--json")).json()["zones"][0]
    return data


def signers(config: Path, zone: str) -> list[str]:
    return [s["name"] for s in status(config, zone)["signers"]]


def check_chain(entries: list[dict[str, Any]], expected: list[str]) -> None:
    """The process's history is exactly ``expected``, each transition once, no gap."""
    states = [e["to_state"] for e in entries]
    assert states == expected, f"history {states}\nexpected {expected}"
    assert len(set(states)) == len(states), "a transition was recorded twice"
    assert entries[0]["from_state"] is None
    assert [e["from_state"] for e in entries[1:]] == states[:-1], "a gap in the history"


def check_holds(entries: list[dict[str, Any]], ttls: dict[str, int], *,
                exact: bool = True) -> list[str]:
    """Every transition into a hold carries the step's TTL terms, a deadline of at least
    observed_at + the terms (from the lab's TTLs) + propagation delay + safety margin --
    with ``exact``, no more either (the lab's TTLs are the only ones there are, and a
    process should take no longer than the physical minimum) -- and the process left the
    hold no earlier than that deadline (an abort may cut a main step's hold short).
    Returns the holds that had TTL terms."""
    checked = []
    for i, e in enumerate(entries):
        if not e["to_state"].endswith(":hold"):
            continue
        step = e["to_state"].split(":")[-2]
        terms, combine = HOLDS.get(step, ((), "sum"))
        ev = e["evidence"]
        assert ev["hold"] == list(terms), f"{e['to_state']}: hold terms {ev['hold']}"
        if terms:
            assert ev["hold_combine"] == combine, f"{e['to_state']}: {ev['hold_combine']}"
        values = [ttls[t] for t in terms]
        need = (max(values) if combine == "max" else sum(values)) if values else 0
        margin = ev["propagation_delay_s"] + ev["safety_margin_s"] if terms else 0.0
        observed, deadline = when(ev["observed_at"]), when(ev["deadline"])
        assert deadline >= observed + timedelta(seconds=need + margin), (
            f"{e['to_state']}: deadline {deadline} < observed {observed} + {need}s + {margin}s")
        if exact:
            assert deadline <= observed + timedelta(seconds=need + margin + 0.01), (
                f"{e['to_state']}: deadline {deadline} > observed {observed} + {need}s + "
                f"{margin}s (TTLs {ev['ttls']})")
        for t in terms:
            assert ev["ttls"][EVIDENCE_TTL[t]] >= ttls[t], (e["to_state"], t, ev["ttls"])
        assert when(e["at"]) >= observed
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        cut = nxt is not None and nxt["to_state"].startswith("abort:") and not e[
            "to_state"].startswith("abort:")
        if nxt is not None and not cut:
            assert when(nxt["at"]) >= deadline, (
                f"left {e['to_state']} at {nxt['at']}, before {deadline}")
        if terms:
            checked.append(step)
    return checked


def audit_ok(config: Path) -> None:
    res = ok(cli(config, "audit", "verify"))
    assert "history chain OK" in res.out, res.out


def advance_until(config: Path, zone: str, predicate: Callable[[str], bool],
                  timeout: float = 30) -> str:
    """Advance the zone's running process one persisted phase at a time (the engine's own
    phases, under the zone lease, as ``step`` would) and stop as soon as its state
    satisfies ``predicate`` -- also in states ``step`` passes through without stopping."""
    cfg = load_config(config)
    zcfg = cfg.zone(zone)
    store = StateStore.open(cfg.state.url)
    rt = Runtime(config=cfg, store=store)
    engine = Engine(rt, lambda _line: None)

    async def run() -> str:
        deadline = time.monotonic() + timeout
        proc = store.active_process(zone)
        assert proc is not None, f"{zone} has no running process"
        state = proc.state
        try:
            while not predicate(state):
                assert time.monotonic() < deadline, f"not within {timeout} s: last {state}"
                with store.lease(zone, holder_id(), 120):
                    outcome = await engine._one(zcfg, proc.id)
                assert not outcome.finished or predicate(outcome.state), (
                    f"finished in {outcome.state}")
                state = outcome.state
                if not outcome.moved:
                    nxt = outcome.next_check_at
                    pause = (nxt - datetime.now(UTC)).total_seconds() if nxt else 0.1
                    await asyncio.sleep(min(max(pause, 0.05), 1.0))
            return state
        finally:
            await rt.aclose()

    try:
        return asyncio.run(run())
    finally:
        store.close()


def refused(res: Result, *needles: str, code: int = 1) -> str:
    """The command was refused with exit ``code`` and a message naming every needle."""
    assert res.rc == code, f"exit {res.rc} (want {code})\nstdout:\n{res.out}\nstderr:\n{res.err}"
    for needle in needles:
        assert needle in res.err, f"{needle!r} not in the message:\n{res.err}"
    return res.err
