"""Helpers of the Model 1 signer add/remove tests.

Everything checked is read independently of the product: what every Knot and the parent
serve (dnspython, RD off), Knot's key database (``keymgr``), the owner's key store (a
child process), the history (``history --json``). The runbooks' state sequences and hold
terms are written out here, independently of ``runbooks/signer-*-model1.toml``.

The invariant watcher is tests/signers' :class:`ReachableWatcher` (it takes plain
endpoints and NS names, no Lab object): only providers some NS RRset names -- the parent's
or a reachable provider's -- are checked, for as long as that NS RRset may be cached.
A Knot that is not a signer yet answers SERVFAIL for the zone (no SKR), so watching it
before it is named would report nothing but errors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from model1roll.m1roll import (
    LAB,
    LONG,
    MULTISIGNER,
    REPO,
    Apex,
    Result,
    apex,
    ask,
    config_copy,
    dnskey,
    ds_of,
    endpoint,
    knot_keys,
    model1_lab,
    ms,
    ok,
    processes,
    rrset,
    stored_keys,
    sync,
    verify_ok,
)
from rollover.probe import Failure, ResolverProbe
from rollover.rollkit import cli, wait_until, when
from signers.signerkit import ReachableWatcher, refused

from multisigner_lab.model1 import KnotServer, Model1Lab

__all__ = ["LAB", "LONG", "MULTISIGNER", "REPO", "Apex", "Result", "apex", "cli", "config_copy",
           "dnskey", "ds_of", "knot_keys", "ms", "ok", "processes", "refused", "stored_keys",
           "sync", "verify_ok", "wait_until", "when"]

PHASES = ("act", "converge", "observe", "hold")
ADD_STEPS = ("import-keys", "add-ns", "parent-ns", "cleanup")
REMOVE_STEPS = ("remove-ns", "drain", "remove-keys")
ADD_ABORTS = {"import-keys": ("unimport",)}
# The hold of each step (RFC 8901 sec. 6.1 order, RFC 7583 terms): the joining ZSK is in
# every cached DNSKEY RRset before any NS names the joiner (DNSKEY-Wait-Time = TTLkey);
# nothing the leaving provider served is cached before its ZSK leaves (NS-Wait-Time +
# TTLsig). Every other step holds nothing.
HOLDS: dict[str, tuple[str, ...]] = {"import-keys": ("TTLkey",), "drain": ("TTLns", "TTLsig")}
EVIDENCE_TTL = {"TTLkey": "key", "TTLsig": "sig", "TTLds": "ds", "TTLns": "ns"}
CSYNC = "0 1 NS"
SLACK = 0.5  # seconds: the sampler's period + query time, to either side
# The steps with no keys, preconditions or hold: the engine persists them as act (which
# converges) and observe (whose transition enters the next step).
ONE_PASS = {"parent-ns", "cleanup", "remove-ns", "remove-keys", "unimport"}


def phases(step: str) -> tuple[str, ...]:
    return ("act", "observe") if step in ONE_PASS else PHASES


def add_states() -> list[str]:
    return [f"{s}:{p}" for s in ADD_STEPS for p in phases(s)] + ["done"]


def remove_states() -> list[str]:
    return [f"{s}:{p}" for s in REMOVE_STEPS for p in phases(s)] + ["done"]


def aborted_add_states(during: str, reached: str) -> list[str]:
    main = [f"{s}:{p}" for s in ADD_STEPS for p in phases(s)]
    out = main[: main.index(reached) + 1]
    out += [f"abort:{s}:{p}" for s in ADD_ABORTS[during] for p in phases(s)]
    return [*out, "aborted"]


def lab_ttls(lab: Model1Lab) -> dict[str, int]:
    """The TTL terms as the lab set them up: every record (SOA minimum, parent NS and the
    apex NS included) has ``lab.ttl``; the parent's DS ``lab.ds_ttl``."""
    return {"TTLkey": lab.ttl, "TTLsig": lab.ttl, "TTLns": lab.ttl, "TTLds": lab.ds_ttl}


# --------------------------------------------------------------------------- labs


m1_lab = model1_lab  # the signer tests' name for it


# --------------------------------------------------------------------------- history


def history(config: Path, zone: str) -> list[dict[str, Any]]:
    """``history ZONE --json`` in this process (it opens no key store)."""
    data: list[dict[str, Any]] = ok(cli(config, "history", zone, "--json")).json()
    return data


def latest(config: Path, zone: str, kind: str | None = None) -> dict[str, Any]:
    rows = [p for p in processes(config, zone) if kind is None or p["kind"] == kind]
    assert rows, f"no {kind or ''} process for {zone}"
    return rows[-1]


def entries_of(config: Path, zone: str, process_id: str) -> list[dict[str, Any]]:
    """The process's transitions. A history record that keeps the state (a re-sign of
    the step's key set while it waits) is a note, not a transition: left out, printed."""
    mine = [e for e in history(config, zone) if e["process_id"] == process_id]
    for e in mine:
        if e["from_state"] == e["to_state"]:
            print(f"{zone}: history note in {e['to_state']}: {e['reason']}")
    return [e for e in mine if e["from_state"] != e["to_state"]]


def check_chain(entries: list[dict[str, Any]], expected: list[str]) -> None:
    """Exactly ``expected``, each transition once, no gap."""
    states = [e["to_state"] for e in entries]
    assert states == expected, f"history {states}\nexpected {expected}"
    assert len(set(states)) == len(states), "a transition was recorded twice"
    assert entries[0]["from_state"] is None, entries[0]
    assert [e["from_state"] for e in entries[1:]] == states[:-1], "a gap in the history"


def check_holds(entries: list[dict[str, Any]], ttls: dict[str, int]) -> list[str]:
    """Every transition into a hold carries the step's TTL terms (HOLDS) and a deadline
    of exactly observed_at + their sum (from the lab's TTLs, not the product's) +
    propagation delay + safety margin -- no less (unsafe), no more (the lab's TTLs are
    the only ones there are) -- and the process left the hold no earlier than that
    (an abort may cut a main step's hold short). Returns the steps whose hold had terms."""
    checked = []
    for i, e in enumerate(entries):
        if not e["to_state"].endswith(":hold"):
            continue
        step = e["to_state"].split(":")[-2]
        terms = HOLDS.get(step, ())
        ev = e["evidence"]
        assert ev["hold"] == list(terms), f"{e['to_state']}: hold terms {ev['hold']}"
        need = sum(ttls[t] for t in terms)
        margin = ev["propagation_delay_s"] + ev["safety_margin_s"] if terms else 0.0
        observed, deadline = when(ev["observed_at"]), when(ev["deadline"])
        least = observed + timedelta(seconds=need + margin)
        assert deadline >= least, f"{e['to_state']}: deadline {deadline} < {least}"
        assert deadline <= least + timedelta(seconds=0.01), (
            f"{e['to_state']}: deadline {deadline} > {least} (TTLs {ev['ttls']})")
        for t in terms:
            assert ev["ttls"][EVIDENCE_TTL[t]] == ttls[t], (e["to_state"], t, ev["ttls"])
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


def status(config: Path, zone: str) -> dict[str, Any]:
    """``status ZONE --json`` in this process (it opens no key store)."""
    data: dict[str, Any] = ok(cli(config, "status", zone, "--json")).json()["zones"][0]
    return data


def signers(config: Path, zone: str) -> list[str]:
    return [s["name"] for s in status(config, zone)["signers"]]


def audit_ok(config: Path) -> None:
    res = ok(cli(config, "audit", "verify"))
    assert "history chain OK" in res.out, res.out


# --------------------------------------------------------------------------- DNS


def ns_names(lab: Model1Lab, providers: list[str]) -> list[str]:
    return sorted(lab.provider(p).ns_name.lower() for p in providers)


def served_ns(k: KnotServer, zone: str) -> frozenset[str]:
    resp = ask(endpoint(k), zone, "NS")
    return frozenset(rd.target.to_text().lower() for rd in rrset(resp, zone, "NS") or ())


def served_csync(k: KnotServer, zone: str) -> tuple[str, ...]:
    resp = ask(endpoint(k), zone, "CSYNC")
    return tuple(rd.to_text() for rd in rrset(resp, zone, "CSYNC") or ())


def zsk_of(k: KnotServer, zone: str) -> Any:
    """The provider's one signing ZSK (DNSKEY rdata), from Knot's key database."""
    (key,) = [x for x in knot_keys(k, zone) if x.zsk and x.signing]
    return key


def owner_key(lab: Model1Lab, zone: str) -> Any:
    return dnskey(lab.owner_ksk(zone)[1])


def check_members(lab: Model1Lab, zone: str, members: list[str]) -> None:
    """The steady state of ``members``: the parent delegates to exactly them; every one of
    them serves the owner-signed combined set holding the owner KSK and exactly the
    members' ZSKs (signed by the owner KSK alone, validating under it), the owner's
    CDS/CDNSKEY, zone data signed with its own ZSK, the same NS RRset naming exactly the
    members, and no CSYNC."""
    owner = owner_key(lab, zone)
    owner_tag = dns.dnssec.key_id(owner)
    zsks = {m: zsk_of(lab.provider(m), zone) for m in members}
    want_ns = frozenset(ns_names(lab, members))
    assert lab.parent_ns(zone) == sorted(want_ns), lab.parent_ns(zone)
    assert lab.delegated(zone) == members, lab.delegated(zone)
    assert lab.parent_ds(zone) == [ds_of(zone, owner)], lab.parent_ds(zone)
    for m in members:
        k = lab.provider(m)
        a = apex(k, zone)
        assert a.ksks == {owner}, f"{m} serves KSKs {sorted(map(dns.dnssec.key_id, a.ksks))}"
        assert a.zsks == {z.dnskey for z in zsks.values()}, (
            f"{m} serves ZSKs {sorted(map(dns.dnssec.key_id, a.zsks))}, not those of "
            f"{members}: {sorted(z.tag for z in zsks.values())}")
        assert a.signers == {owner_tag}, f"{m}: DNSKEY RRset signed by {sorted(a.signers)}"
        assert a.validates(owner), f"{m}: the DNSKEY RRset does not validate under the owner"
        assert a.cds == {ds_of(zone, owner)} and a.cdnskey == {owner}, m
        assert set(a.data_signers.values()) == {frozenset({zsks[m].tag})}, (m, a.data_signers)
        assert served_ns(k, zone) == want_ns, f"{m} serves NS {sorted(served_ns(k, zone))}"
        assert served_csync(k, zone) == (), f"{m} still serves CSYNC"


# --------------------------------------------------------------------------- observers


class Watched:
    """The reachable-only invariant watcher and the Unbound AD probe over one zone of a
    Model 1 lab, for a ``with`` block."""

    def __init__(self, lab: Model1Lab, zone: str) -> None:
        self.zone = zone
        self.watcher = ReachableWatcher(
            zone, {k.name: [endpoint(k)] for k in lab.providers},
            [(lab.parent.address, lab.parent.dns_port)],
            {k.name: k.ns_name for k in lab.providers})
        self.probe = ResolverProbe(lab.resolver, zone)
        self.failures: list[Failure] = []
        self.answers = 0

    def __enter__(self) -> Watched:
        self.watcher.start()
        self.probe.start()
        self.watcher.wait_rounds(2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop()
        self.failures, self.answers = self.probe.stop()
        print(f"watcher {self.zone}: {self.watcher.summary()}; watched "
              f"{[(round(t, 1), who) for t, who in self.watcher.watched]}; resolver: "
              f"{self.answers} answers, {len(self.failures)} bad")

    def assert_clean(self) -> None:
        """Zero breaches; every watcher query and every resolver answer NOERROR (with AD).
        Only a query that got no answer at all (a timeout on a loaded host) is tolerated,
        rarely: it can neither hide nor fake a breach."""
        w = self.watcher
        assert w.rounds >= 5, w.summary()
        assert not w.breaches, "invariant breaches:\n" + "\n".join(map(str, w.breaches[:20]))
        errors = [e for e in w.errors if "timed out" not in e]
        assert not errors, "watcher query errors:\n" + "\n".join(errors[:20])
        assert len(w.errors) - len(errors) <= max(2, w.rounds // 50), w.errors[:20]
        bad = [f for f in self.failures
               if not (f.problem.startswith("no answer") and "Timeout" in f.problem)]
        assert not bad, "resolver answers without AD (or not NOERROR):\n" + "\n".join(
            str(f) for f in bad[:20])
        assert len(self.failures) - len(bad) <= max(2, self.answers // 50), self.failures
        assert self.answers > 10, f"only {self.answers} resolver answers"


@dataclass(frozen=True)
class Sample:
    at: float
    keys: frozenset[int] | None  # DNSKEY tags; None: no NOERROR answer (no SKR yet)
    ns: frozenset[str]  # the apex NS names it serves


class Sampler(threading.Thread):
    """Every ``interval`` s: each Knot's DNSKEY tags and apex NS, the parent's NS for the
    zone -- to check the order and spacing of the join and leave steps from outside."""

    def __init__(self, lab: Model1Lab, zone: str, interval: float = 0.1) -> None:
        super().__init__(name=f"sampler {zone}", daemon=True)
        self.zone = zone
        self.knots = {k.name: endpoint(k) for k in lab.providers}
        self.parent = (lab.parent.address, lab.parent.dns_port)
        self.interval = interval
        self.samples: dict[str, list[Sample]] = {name: [] for name in self.knots}
        self.parent_ns: list[tuple[float, frozenset[str]]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        z = self.zone
        while not self._halt.is_set():
            started = time.monotonic()
            for name, where in self.knots.items():
                try:
                    keys = ask(where, z, "DNSKEY", 1.0)
                    ns = ask(where, z, "NS", 1.0)
                    at = time.time()
                    tags = (frozenset(dns.dnssec.key_id(k) for k in rrset(keys, z, "DNSKEY")
                                      or ()) if keys.rcode() == dns.rcode.NOERROR else None)
                    self.samples[name].append(Sample(at, tags, frozenset(
                        rd.target.to_text().lower() for rd in rrset(ns, z, "NS") or ())))
                except (dns.exception.DNSException, OSError) as exc:
                    self.errors.append(f"{name}: {exc}")
            try:
                resp = ask(self.parent, z, "NS", 1.0)
                name = dns.name.from_text(z)
                found: dns.rrset.RRset | None = None
                for section in (resp.authority, resp.answer):
                    found = found or resp.get_rrset(section, name, dns.rdataclass.IN,
                                                    dns.rdatatype.NS)
                self.parent_ns.append((time.time(), frozenset(
                    rd.target.to_text().lower() for rd in found or ())))
            except (dns.exception.DNSException, OSError) as exc:
                self.errors.append(f"parent: {exc}")
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(timeout=10)

    def named(self, ns_name: str) -> list[float]:
        """Every instant some NS RRset (the parent's or a Knot's) named ``ns_name``."""
        out = [at for at, ns in self.parent_ns if ns_name in ns]
        out += [s.at for samples in self.samples.values() for s in samples if ns_name in s.ns]
        return sorted(out)

    def first_all(self, providers: list[str], tag: int, present: bool) -> float:
        """When the last of ``providers`` was first seen serving (not serving) ``tag``."""
        times = []
        for p in providers:
            at = next((s.at for s in self.samples[p]
                       if s.keys is not None and (tag in s.keys) == present), None)
            how = "with" if present else "without"
            assert at is not None, f"{p} never served a DNSKEY RRset {how} {tag}"
            times.append(at)
        return max(times)

    def first_any(self, providers: list[str], tag: int, present: bool,
                  after: float = 0.0) -> float:
        times = [s.at for p in providers for s in self.samples[p]
                 if s.at > after and s.keys is not None and (tag in s.keys) == present]
        assert times, f"none of {providers} served a set {'with' if present else 'without'} {tag}"
        return min(times)


# --------------------------------------------------------------------------- snapshots


def served_snapshot(k: KnotServer, zone: str) -> dict[str, Any]:
    """What a Knot serves at the apex, signatures included (a new SKR import changes the
    owner's RRSIGs; an NS/CSYNC change bumps the SOA serial)."""
    out: dict[str, Any] = {}
    for rdtype in ("SOA", "DNSKEY", "NS", "CSYNC", "CDS"):
        resp = ask(endpoint(k), zone, rdtype)
        rr = rrset(resp, zone, rdtype)
        sigs = rrset(resp, zone, rdtype, True)
        out[rdtype] = (dns.rcode.to_text(resp.rcode()),
                       sorted(rd.to_text() for rd in rr or ()),
                       sorted(rd.to_text() for rd in sigs or ()))
    return out


def knot_snapshot(k: KnotServer, zone: str) -> dict[str, Any]:
    return {"served": served_snapshot(k, zone),
            "keys": sorted((x.id, x.tag, tuple(sorted(x.timers.items())))
                           for x in knot_keys(k, zone))}


# --------------------------------------------------------------------------- processes


def children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command line) of the live-or-zombie children of ``pid``."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append((int(entry.name), fields[0], cmd.strip()))
    return out


def open_transactions(lab: Model1Lab, zone: str) -> list[str]:
    """The Knots whose log shows a knotc zone transaction on ``zone`` begun and neither
    committed nor aborted (Knot logs every control command it receives)."""
    out = []
    for k in lab.providers:
        log = k.dir / "server.log"
        text = log.read_text() if log.exists() else ""
        opened = text.count(f"[{zone}] control, received command 'zone-begin'")
        closed = sum(text.count(f"[{zone}] control, received command '{c}'")
                     for c in ("zone-commit", "zone-abort"))
        if opened > closed:
            out.append(k.name)
    return out


def kill_outside_transaction(p: subprocess.Popen[bytes], lab: Model1Lab, zone: str,
                             budget: float = 5.0) -> float:
    """SIGKILL the controller ``p`` at this point -- unless a knotc zone transaction it
    opened is still open: then let it run on a little and try again (the crash window
    inside a transaction has its own deterministic test in test_m1signer_crash.py).
    Race-free: the controller is stopped (SIGSTOP) and its in-flight Knot tools end (they
    would run to their end after a SIGKILL of the controller too) before the logs are
    read. Returns the seconds the kill was deferred."""
    deferred = 0.0
    started = time.monotonic()
    while True:
        os.kill(p.pid, signal.SIGSTOP)
        wait_until(lambda: all(state == "Z" for _, state, _ in children(p.pid)), 15,
                   "the stopped controller's Knot tools end", interval=0.005)
        if not open_transactions(lab, zone) or time.monotonic() - started > budget:
            assert not open_transactions(lab, zone), "a zone transaction stays open"
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
            return deferred
        os.kill(p.pid, signal.SIGCONT)
        time.sleep(0.05)
        deferred += 0.05
