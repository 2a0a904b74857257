"""Helpers of the Model 1 rollover tests.

Everything the tests check is read independently of the product: what every Knot and the
parent serve (dnspython, RD off), Knot's key database (``keymgr`` directly), the owner's
key store (``make_store`` in a child process: loading SoftHSM2 fixes its configuration for
the whole process), the history (``multisigner history --json``). Expected state sequences
and hold terms come from ``tests/rollover/rollkit.py``, written out there independently of
``runbooks/*.toml``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from prereq import needs
from rollover.probe import Failure, ResolverProbe
from rollover.rollkit import (
    MULTISIGNER,
    REPO,
    Result,
    abort_states,
    check_holds,
    cli,
    cli_proc,
    lab_ttls,
    main_states,
    ok,
    wait_until,
    when,
    write_config,
)
from rollover.watcher import Breach, Watcher
from survivors import survivors

from multisigner_lab.model1 import KnotServer, Model1Lab

__all__ = ["MULTISIGNER", "REPO", "Result", "abort_states", "check_holds", "main_states", "ok",
           "wait_until", "when"]

TOOLS = ("pdns_server", "unbound", "knotd", "knotc", "keymgr", "softhsm2-util")
LAB = [
    pytest.mark.lab,
    needs(*TOOLS, what="Debian packages pdns-server, unbound, knot, softhsm2"),
]
IN = dns.rdataclass.IN
# The zone data every lab zone holds (multisigner_lab/zones.py): the RRsets a provider
# signs with its ZSK, asked for one by one.
DATA = (("", "SOA"), ("", "A"), ("", "NS"), ("", "MX"), ("", "TXT"), ("www.", "A"),
        ("mail.", "A"))


# --------------------------------------------------------------------------- labs


def lab_processes(directory: Path) -> list[str]:
    """Command lines of running processes naming ``directory`` (every lab server does)."""
    return [line.split(": ", 1)[1].strip() for line in survivors(str(directory))]


@contextlib.contextmanager
def model1_lab(factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> Iterator[Model1Lab]:
    """A Model 1 lab in a fresh temp dir; always stopped, and checked to be gone (a Knot
    tool a killed controller left running gets a few seconds to end with its knotd)."""
    directory = factory.mktemp(name)
    lab = Model1Lab.start(directory, **kwargs)
    try:
        yield lab
    finally:
        lab.stop()
        assert lab.alive() == [], f"lab processes survived stop(): {lab.alive()}"
        wait_until(lambda: not lab_processes(directory), 15,
                   f"no process of the lab in {directory} runs", interval=0.2)


# Owner signatures that outlive a module: one ``sync --all`` at its start is enough (the
# lab's own 60 s/30 s are for watching re-signing, which the daemon does).
LONG = {"signature_validity": "10m", "signature_refresh": "5m"}


def config_copy(lab: Model1Lab, name: str, zones: list[str] | None = None,
                policy: dict[str, str] | None = None) -> Path:
    """The lab's config with only ``zones`` (same state database), policy updated."""
    return write_config(lab, name, zones=zones, policy=policy)  # type: ignore[arg-type]


def sync_all(config: Path) -> None:
    res = ok(ms(config, "sync", "--all", timeout=180))
    zones = [z["name"] for z in tomllib.loads(config.read_text())["zones"]]
    for zone in zones:
        assert f"{zone}: synced" in res.out or f"{zone}: in sync" in res.out, res.text


def ms(config: Path, *args: str, timeout: float = 120) -> Result:
    """``multisigner --config CONFIG ARGS`` as a real process."""
    return cli_proc(config, *args, timeout=timeout)


def sync(config: Path, zone: str) -> None:
    """Bring the zone to its steady state (or refresh the owner's signatures)."""
    res = ok(ms(config, "sync", zone))
    assert f"{zone}: synced" in res.out or f"{zone}: in sync" in res.out, res.text


def history(config: Path, zone: str) -> list[dict[str, Any]]:
    """``history ZONE --json`` in this process (it opens no key store)."""
    data: list[dict[str, Any]] = ok(cli(config, "history", zone, "--json")).json()
    return data


def process_entries(config: Path, zone: str, kind: str) -> tuple[str, list[dict[str, Any]]]:
    """(id, state changes) of the zone's latest process of ``kind``. History entries that
    keep the state (a re-sign of the current key set during a wait, a STALLED note) are
    records, not transitions: left out (and printed)."""
    entries = [e for e in history(config, zone) if e["kind"] == kind]
    assert entries, f"no {kind} in the history of {zone}"
    pid = entries[-1]["process_id"]
    mine = [e for e in entries if e["process_id"] == pid]
    notes = [e for e in mine if e["from_state"] == e["to_state"]]
    for e in notes:
        print(f"{zone}: history note in {e['to_state']}: {e['reason']}")
    return pid, [e for e in mine if e["from_state"] != e["to_state"]]


def to_states(entries: list[dict[str, Any]]) -> list[str]:
    return [e["to_state"] for e in entries]


def check_chain(entries: list[dict[str, Any]]) -> None:
    """Each transition starts where the previous one ended; the first starts nowhere."""
    assert entries[0]["from_state"] is None, entries[0]
    assert [e["from_state"] for e in entries[1:]] == to_states(entries)[:-1], \
        "a gap in the history"


def state_db(config: Path) -> Path:
    url = tomllib.loads(config.read_text())["state"]["url"]
    return Path(url.removeprefix("sqlite:///"))


def processes(config: Path, zone: str) -> list[dict[str, Any]]:
    """The zone's process rows, oldest first (read-only look into the state database)."""
    conn = sqlite3.connect(f"file:{state_db(config)}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(
            "SELECT * FROM process WHERE zone = ? ORDER BY started_at", (zone,))]
    except sqlite3.OperationalError:  # no database yet
        return []
    finally:
        conn.close()


def ttls(lab: Model1Lab) -> dict[str, int]:
    """The lab's TTL terms (rollkit.lab_ttls: TTLkey the DNSKEY TTL, TTLsig the largest
    signed-data TTL, TTLds the parent's DS TTL)."""
    return lab_ttls(lab)


@dataclass(frozen=True)
class Durations:
    total: float  # first transition to the last (done/aborted), from the history
    holds: float  # sum of the RFC 7583 hold terms (TTLs) of the holds the process made
    margins: float  # propagation_delay + safety_margin of those holds
    observe: float  # time spent observing (propagation, parent), from the evidence
    phases: dict[str, float] = field(default_factory=dict)  # time in act/converge/...

    def __str__(self) -> str:
        spent = ", ".join(f"{k} {v:.2f}" for k, v in self.phases.items())
        return (f"{self.total:.2f} s total; TTL terms {self.holds:.0f} s + margins "
                f"{self.margins:.0f} s = {self.holds + self.margins:.0f} s; observed waits "
                f"{self.observe:.2f} s; overhead {self.total - self.holds - self.margins:.2f}"
                f" s ({100 * self.total / max(1e-9, self.holds):.0f}% of the TTL terms); "
                f"seconds per phase: {spent}")


def durations(entries: list[dict[str, Any]]) -> Durations:
    names = {"TTLkey": "key", "TTLsig": "sig", "TTLds": "ds"}
    holds = margins = observe = 0.0
    for e in entries:
        if not e["to_state"].endswith(":hold"):
            continue
        ev = e["evidence"]
        terms = [ev["ttls"][names[t]] for t in ev["hold"]]
        if terms:
            holds += max(terms) if ev["hold_combine"] == "max" else sum(terms)
            margins += ev["propagation_delay_s"] + ev["safety_margin_s"]
        observe += ev.get("observed_after_s", 0.0)
    total = (when(entries[-1]["at"]) - when(entries[0]["at"])).total_seconds()
    phases: dict[str, float] = {}
    for e, nxt in itertools.pairwise(entries):
        phase = e["to_state"].rsplit(":", 1)[-1]
        spent = (when(nxt["at"]) - when(e["at"])).total_seconds()
        phases[phase] = phases.get(phase, 0.0) + spent
    return Durations(total, holds, margins, observe, phases)


def check_holds_lab(entries: list[dict[str, Any]], key: str, lab: Model1Lab) -> int:
    """rollkit.check_holds with the lab's TTLs: each hold's deadline is at least
    observed_at + its TTL terms + delay + margin, and the process left it no earlier."""
    return check_holds(entries, key, ttls(lab))


# --------------------------------------------------------------------------- DNS


def endpoint(k: KnotServer) -> tuple[str, int]:
    return k.address, k.dns_port


def ask(where: tuple[str, int], qname: str | dns.name.Name, rdtype: str,
        timeout: float = 2.0) -> dns.message.Message:
    q = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
    q.flags &= ~dns.flags.RD
    resp, _ = dns.query.udp_with_fallback(q, where[0], port=where[1], timeout=timeout)
    return resp


def rrset(resp: dns.message.Message, qname: str, rdtype: str,
          sigs: bool = False) -> dns.rrset.RRset | None:
    name = dns.name.from_text(qname)
    t = dns.rdatatype.from_text(rdtype)
    if sigs:
        return resp.get_rrset(resp.answer, name, IN, dns.rdatatype.RRSIG, t)
    return resp.get_rrset(resp.answer, name, IN, t)


def tags(keys: Any) -> frozenset[int]:
    return frozenset(dns.dnssec.key_id(k) for k in keys or ())


def sig_tags(sigs: Any) -> frozenset[int]:
    return frozenset(int(s.key_tag) for s in sigs or ())


def dnskey(text: str) -> Any:
    return dns.rdata.from_text(IN, dns.rdatatype.DNSKEY, text)


def ds_of(zone: str, key: Any) -> str:
    """A SHA-256 DS as ``Model1Lab.parent_ds`` writes it."""
    d = dns.dnssec.make_ds(dns.name.from_text(zone), key, "SHA256")
    return f"{d.key_tag} {d.algorithm} {d.digest_type} {d.digest.hex()}"


@dataclass(frozen=True)
class Apex:
    """What one Knot serves for the zone now (all RRSIG sets by key tag)."""

    provider: str
    keys: frozenset[Any]  # DNSKEY rdatas
    dnskey_rrset: dns.rrset.RRset
    dnskey_sigs: dns.rrset.RRset
    cds: frozenset[str]
    cdnskey: frozenset[Any]
    data_signers: dict[str, frozenset[int]]  # "www. A" -> RRSIG key tags

    @property
    def ksks(self) -> frozenset[Any]:
        return frozenset(k for k in self.keys if k.flags & 1)

    @property
    def zsks(self) -> frozenset[Any]:
        return frozenset(k for k in self.keys if not k.flags & 1)

    @property
    def signers(self) -> frozenset[int]:
        return sig_tags(self.dnskey_sigs)

    def validates(self, key: Any) -> bool:
        """The DNSKEY RRset validates now under ``key`` alone."""
        anchor = dns.rrset.from_rdata_list(self.dnskey_rrset.name, 60, [key])
        try:
            dns.dnssec.validate(self.dnskey_rrset, self.dnskey_sigs,
                                {self.dnskey_rrset.name: anchor})
        except dns.dnssec.ValidationFailure:
            return False
        return True


def apex(k: KnotServer, zone: str) -> Apex:
    where = endpoint(k)
    keys = ask(where, zone, "DNSKEY")
    assert keys.rcode() == dns.rcode.NOERROR, (k.name, keys)
    key_set, key_sigs = rrset(keys, zone, "DNSKEY"), rrset(keys, zone, "DNSKEY", True)
    assert key_set is not None and key_sigs is not None, f"{k.name}: no signed DNSKEY RRset"
    cds = rrset(ask(where, zone, "CDS"), zone, "CDS")
    cdnskey = rrset(ask(where, zone, "CDNSKEY"), zone, "CDNSKEY")
    signers = {}
    for prefix, rdtype in DATA:
        resp = ask(where, prefix + zone, rdtype)
        signers[f"{prefix} {rdtype}".strip()] = sig_tags(rrset(resp, prefix + zone, rdtype,
                                                               True))
    # the NSEC(3) proof of a name that does not exist is signed by the ZSK too
    resp = ask(where, "nx-" + str(int(time.time())) + "." + zone, "A")
    signers["denial"] = frozenset(int(s.key_tag) for r in resp.authority
                                  if r.rdtype == dns.rdatatype.RRSIG for s in r)
    return Apex(k.name, frozenset(key_set), key_set, key_sigs,
                frozenset(f"{d.key_tag} {d.algorithm} {d.digest_type} {d.digest.hex()}"
                          for d in cds or ()),
                frozenset(dnskey(rd.to_text()) for rd in cdnskey or ()), signers)


def apexes(lab: Model1Lab, zone: str) -> dict[str, Apex]:
    return {k.name: apex(k, zone) for k in lab.providers}


# --------------------------------------------------------------------------- Knot


def keymgr(k: KnotServer, *args: str) -> str:
    done = subprocess.run(["keymgr", "-c", str(k.conf_path), *args], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, f"keymgr {args}: {done.stdout}{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class KnotKey:
    id: str
    tag: int
    zsk: bool
    dnskey: Any
    timers: dict[str, int] = field(hash=False, compare=False)

    def reached(self, timer: str, now: float) -> bool:
        return 0 < self.timers.get(timer, 0) <= now

    @property
    def signing(self) -> bool:
        now = time.time()
        return (self.reached("active", now) and not self.reached("retire", now)
                and not self.reached("remove", now))


def knot_keys(k: KnotServer, zone: str) -> list[KnotKey]:
    """Knot's keys of ``zone`` (``keymgr -j ZONE list`` and ``keymgr ZONE dnskey``)."""
    out = []
    for item in json.loads(keymgr(k, "-j", zone, "list") or "[]"):
        words = keymgr(k, zone, "dnskey", f"id={item['id']}").split()
        at = [w.upper() for w in words].index("DNSKEY")
        timers = {t: int(item.get(t, 0) or 0) for t in ("publish", "active", "retire",
                                                         "remove")}
        out.append(KnotKey(item["id"], int(item["tag"]), bool(item["zsk"]),
                           dnskey(" ".join(words[at + 1:])), timers))
    return out


# --------------------------------------------------------------------------- owner store

_LIST_STORE = """
import json, sys
from pathlib import Path
from core.config import load_config
from providers.kskstore import make_store
zone = load_config(Path(sys.argv[1])).zone(sys.argv[2])
with make_store(zone.owner_ksk) as store:
    print(json.dumps([{"key_id": k.key_id, "dnskey": k.dnskey.text} for k in store.list_keys()]))
"""


def stored_keys(config: Path, zone: str) -> dict[str, Any]:
    """key id -> DNSKEY rdata of every owner KSK of ``zone`` in its store (a child process
    opens it: SoftHSM2's configuration is process-global)."""
    done = subprocess.run([sys.executable, "-c", _LIST_STORE, str(config), zone],
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return {k["key_id"]: dnskey(k["dnskey"]) for k in json.loads(done.stdout)}


def pem_files(lab: Model1Lab, zone: str) -> list[str]:
    """The PEM key files of a file store (dot files are the store's temporaries)."""
    directory = Path(lab.state["owner_ksk"]["directories"][zone])
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".pem")


# --------------------------------------------------------------------------- observers


class Watched:
    """The invariant watcher and the Unbound AD probe over one zone of a Model 1 lab, for a
    ``with`` block. The watcher takes plain endpoints, so no Lab adapter is needed."""

    def __init__(self, lab: Model1Lab, zone: str) -> None:
        servers = {k.name: [endpoint(k)] for k in lab.providers}
        parent = [(lab.parent.address, lab.parent.dns_port)]
        self.zone = zone
        self.watcher = Watcher(zone, servers, parent)
        self.probe = ResolverProbe(lab.resolver, zone)
        self.breaches: list[Breach] = []
        self.failures: list[Failure] = []
        self.rounds = 0
        self.answers = 0

    def __enter__(self) -> Watched:
        self.watcher.start()
        self.probe.start()
        self.watcher.wait_rounds(2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.breaches, self.rounds = self.watcher.stop()
        self.failures, self.answers = self.probe.stop()
        print(f"watcher {self.zone}: {self.watcher.summary()}; resolver: {self.answers} "
              f"answers, {len(self.failures)} without AD")

    def assert_clean(self) -> None:
        """Zero breaches; every resolver answer NOERROR with AD; every watcher query
        answered NOERROR. Only a query that got no answer at all (a UDP/TCP timeout: the
        host is shared and loaded) is tolerated, and only rarely -- it is no answer, so
        it can neither hide nor fake a breach."""
        assert self.rounds >= 5, self.watcher.summary()
        assert not self.breaches, "invariant breaches:\n" + "\n".join(
            str(b) for b in self.breaches[:20])
        errors = [e for e in self.watcher.errors if "timed out" not in e]
        assert not errors, "watcher query errors:\n" + "\n".join(errors[:20])
        timeouts = len(self.watcher.errors) - len(errors)
        assert timeouts <= max(2, self.rounds // 50), "watcher timeouts:\n" + "\n".join(
            self.watcher.errors[:20])
        bad = [f for f in self.failures if not _timeout(f)]
        assert not bad, "resolver answers without AD (or not NOERROR):\n" + "\n".join(
            str(f) for f in bad[:20])
        lost = len(self.failures) - len(bad)
        assert lost <= max(2, self.answers // 50), "resolver timeouts:\n" + "\n".join(
            str(f) for f in self.failures[:20])
        assert self.answers > 10, f"only {self.answers} resolver answers"


def _timeout(f: Failure) -> bool:
    return f.problem.startswith("no answer") and "Timeout" in f.problem


@dataclass(frozen=True)
class Sample:
    at: float
    keys: frozenset[int]  # DNSKEY tags
    dnskey_signers: frozenset[int]
    soa_signers: frozenset[int]
    cds: frozenset[int]  # CDS key tags


class Timeline(threading.Thread):
    """What every Knot serves at the apex (and the parent's DS tags), sampled every
    ``interval`` seconds: to check the order and spacing of a rollover's phases."""

    def __init__(self, lab: Model1Lab, zone: str, interval: float = 0.1) -> None:
        super().__init__(name=f"timeline {zone}", daemon=True)
        self.zone = zone
        self.knots = {k.name: endpoint(k) for k in lab.providers}
        self.parent = (lab.parent.address, lab.parent.dns_port)
        self.interval = interval
        self.samples: dict[str, list[Sample]] = {name: [] for name in self.knots}
        self.ds: list[tuple[float, frozenset[int]]] = []
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        z = self.zone
        while not self._stop_event.is_set():
            started = time.monotonic()
            for name, where in self.knots.items():
                try:
                    keys, soa, cds = (ask(where, z, t, 1.0) for t in ("DNSKEY", "SOA", "CDS"))
                    self.samples[name].append(Sample(
                        time.time(), tags(rrset(keys, z, "DNSKEY")),
                        sig_tags(rrset(keys, z, "DNSKEY", True)),
                        sig_tags(rrset(soa, z, "SOA", True)),
                        frozenset(int(d.key_tag) for d in rrset(cds, z, "CDS") or ())))
                except (dns.exception.DNSException, OSError) as exc:
                    self.errors.append(f"{name}: {exc}")
            try:
                ds = ask(self.parent, z, "DS", 1.0)
                self.ds.append((time.time(), frozenset(int(d.key_tag) for d in
                                                       rrset(ds, z, "DS") or ())))
            except (dns.exception.DNSException, OSError) as exc:
                self.errors.append(f"parent: {exc}")
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Timeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def first(self, provider: str, pred: Callable[[Sample], bool]) -> float | None:
        return next((s.at for s in self.samples[provider] if pred(s)), None)

    def all_first(self, pred: Callable[[Sample], bool],
                  providers: list[str] | None = None) -> float:
        """When the last of ``providers`` (all) was first seen in a state."""
        times = [self.first(p, pred) for p in providers or list(self.knots)]
        assert all(t is not None for t in times), f"a provider never reached the state: {times}"
        return max(t for t in times if t is not None)

    def any_first(self, pred: Callable[[Sample], bool]) -> float:
        times = [t for p in self.knots if (t := self.first(p, pred)) is not None]
        assert times, "no provider ever reached the state"
        return min(times)

    def ds_first(self, pred: Callable[[frozenset[int]], bool]) -> float:
        t = next((at for at, ds in self.ds if pred(ds)), None)
        assert t is not None, f"the parent never served that DS: {sorted(set(self.ds))[:5]}"
        return t

    def phases(self, provider: str, view: Callable[[Sample], Any]) -> list[Any]:
        """The distinct successive values of ``view`` at ``provider``."""
        out: list[Any] = []
        for s in self.samples[provider]:
            v = view(s)
            if not out or out[-1] != v:
                out.append(v)
        return out

    def ds_phases(self) -> list[frozenset[int]]:
        out: list[frozenset[int]] = []
        for _, ds in self.ds:
            if not out or out[-1] != ds:
                out.append(ds)
        return out


# --------------------------------------------------------------------------- daemon


def sleep_until(at: datetime) -> None:
    from datetime import UTC

    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))


def step_until(config: Path, zone: str, predicate: Callable[[str], bool],
               timeout: float = 40) -> dict[str, Any]:
    """``multisigner step ZONE --json`` (a real process), sleeping until each next check,
    until the process state satisfies ``predicate``; returns the last process row."""
    from datetime import UTC

    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] = ok(ms(config, "step", zone, "--json")).json()
        row = processes(config, zone)[-1]
        if predicate(row["state"]):
            return row
        assert row["status"] == "running", f"finished in {row['state']}"
        assert time.monotonic() < deadline, f"not within {timeout} s: last {answer}"
        nxt = answer.get("next_check_at")
        pause = (when(nxt) - datetime.now(UTC)).total_seconds() if nxt else 0.1
        # a step is a whole process start: sleep until the next check, not in slices
        time.sleep(min(max(pause + 0.05, 0.05), 30.0))


def verify_ok(config: Path, zone: str, timeout: float = 15) -> Result:
    """``verify ZONE`` passes (retried while caches of the old RRsets run out)."""
    last: list[Result] = []

    def check() -> bool:
        res = cli(config, "verify", zone)  # in this process: verify opens no key store
        last[:] = [res]
        return res.rc == 0

    try:
        wait_until(check, timeout, f"verify {zone} passes", interval=0.5)
    except AssertionError:
        raise AssertionError(f"verify {zone} still fails: {last[0].text}") from None
    return last[0]


def after(seconds: float) -> datetime:
    from datetime import UTC

    return datetime.now(UTC) + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- one rollover

SLACK = 0.5  # seconds: sampling period + query time of the Timeline, to either side


@dataclass
class Rolled:
    """What a finished rollover left behind, for the tests that look further."""

    zone: str
    process_id: str
    entries: list[dict[str, Any]]
    took: float  # wall time of ``rollover --wait``
    old: Any  # DNSKEY rdata
    new: Any
    durations: Durations


def _report(what: str, zone: str, took: float, d: Durations) -> None:
    print(f"DURATION {what} {zone}: --wait {took:.2f} s; history {d}")


def roll_zsk(lab: Model1Lab, config: Path, zone: str, signer: str) -> Rolled:
    """``rollover ZONE --key zsk --signer SIGNER --wait`` under the watcher, the Unbound
    probe and the timeline, then everything a finished Model 1 ZSK rollover must show.
    The zone must be synced (and its owner signatures good for the whole test)."""
    assert signer in lab.ns_names, signer
    before = {k.name: knot_keys(k, zone) for k in lab.providers}
    (old,) = [k for k in before[signer] if k.zsk and k.signing]
    ds_before = lab.parent_ds(zone)
    served_before = apexes(lab, zone)
    started = time.monotonic()
    with Watched(lab, zone) as watched, Timeline(lab, zone) as tl:
        res = ms(config, "rollover", zone, "--key", "zsk", "--signer", signer, "--wait")
        took = time.monotonic() - started
        if res.rc == 0:
            time.sleep(ttls(lab)["TTLsig"])  # the watcher keeps watching while caches run out
            verify_ok(config, zone)
    ok(res)
    watched.assert_clean()
    assert "zsk-rollover done" in res.out, res.out
    assert not tl.errors[:3], tl.errors[:3]

    # the history: exactly the runbook's states, each hold long enough
    pid, entries = process_entries(config, zone, "zsk-rollover")
    assert to_states(entries) == main_states("zsk")
    check_chain(entries)
    assert check_holds_lab(entries, "zsk", lab) == 3
    (row,) = [p for p in processes(config, zone) if p["id"] == pid]
    assert (row["state"], row["status"], row["signer"]) == ("done", "done", signer)

    # Knot's key database: the predecessor deleted at the signer, one signing successor
    after = {k.name: knot_keys(k, zone) for k in lab.providers}
    assert old.id not in {k.id for k in after[signer]}, "the predecessor is still at Knot"
    fresh = [k for k in after[signer] if k.id not in {b.id for b in before[signer]}]
    assert len(fresh) == 1 and fresh[0].zsk and fresh[0].signing, after[signer]
    new = fresh[0]
    assert [k.id for k in after[signer]] == [new.id], "more than one key at the signer"
    for name, keys in before.items():
        if name != signer:
            assert [k.id for k in after[name]] == [k.id for k in keys], name

    # what every Knot serves: the same combined set, old ZSK gone, new ZSK signing
    served = apexes(lab, zone)
    assert len({a.keys for a in served.values()}) == 1, "Knots serve different DNSKEY sets"
    for name, a in served.items():
        assert old.dnskey not in a.keys, f"{name} still serves the old ZSK {old.tag}"
        assert new.dnskey in a.keys, f"{name} does not serve the new ZSK {new.tag}"
        assert a.ksks == served_before[name].ksks, "the owner KSK changed"
        assert a.signers == served_before[name].signers
        assert a.cds == served_before[name].cds
        if name == signer:
            assert set(a.data_signers.values()) == {frozenset({new.tag})}, a.data_signers
        else:
            assert a.data_signers == served_before[name].data_signers, name
    assert lab.parent_ds(zone) == ds_before

    # the phases as every Knot served them, and their spacing (RFC 7583 sec. 3.2.1)
    def pair(s: Sample) -> tuple[bool, bool]:
        return old.tag in s.keys, new.tag in s.keys

    for name in tl.knots:
        assert tl.phases(name, pair) == [(True, False), (True, True), (False, True)], name
    signing = tl.phases(signer, lambda s: s.soa_signers)
    assert signing[0] == {old.tag} and signing[-1] == {new.tag}, signing
    assert all(s <= {old.tag, new.tag} for s in signing), signing
    published = tl.all_first(lambda s: new.tag in s.keys)
    switched = tl.first(signer, lambda s: old.tag not in s.soa_signers)
    withdrawn = tl.any_first(lambda s: old.tag not in s.keys)
    assert switched is not None
    terms = ttls(lab)
    print(f"{zone}: successor served everywhere -> signs: {switched - published:.2f} s "
          f"(TTLkey {terms['TTLkey']}); signs -> predecessor out: "
          f"{withdrawn - switched:.2f} s (TTLsig {terms['TTLsig']})")
    assert switched - published >= terms["TTLkey"] - SLACK
    assert withdrawn - switched >= terms["TTLsig"] - SLACK
    d = durations(entries)
    _report(f"zsk-rollover ({len(lab.providers)} providers, {signer})", zone, took, d)
    return Rolled(zone, pid, entries, took, old.dnskey, new.dnskey, d)


def roll_ksk(lab: Model1Lab, config: Path, zone: str) -> Rolled:
    """``rollover ZONE --key ksk --wait`` under the watcher, the Unbound probe and the
    timeline, then everything a finished owner KSK rollover must show. The zone must be
    synced (and its owner signatures good for the whole test)."""
    stored_before = stored_keys(config, zone)
    assert len(stored_before) == 1, stored_before
    ((old_id, old),) = stored_before.items()
    old_tag = dns.dnssec.key_id(old)
    assert lab.parent_ds(zone) == [ds_of(zone, old)]
    served_before = apexes(lab, zone)
    pems_before = pem_files(lab, zone) if lab.store == "file" else []
    started = time.monotonic()
    with Watched(lab, zone) as watched, Timeline(lab, zone) as tl:
        res = ms(config, "rollover", zone, "--key", "ksk", "--wait")
        took = time.monotonic() - started
        if res.rc == 0:
            time.sleep(max(ttls(lab).values()))
            verify_ok(config, zone)
    ok(res)
    watched.assert_clean()
    assert "ksk-rollover done" in res.out, res.out
    assert not tl.errors[:3], tl.errors[:3]

    pid, entries = process_entries(config, zone, "ksk-rollover")
    assert to_states(entries) == main_states("ksk")
    check_chain(entries)
    assert check_holds_lab(entries, "ksk", lab) == 3
    (row,) = [p for p in processes(config, zone) if p["id"] == pid]
    assert (row["state"], row["status"], row["signer"]) == ("done", "done", "owner")

    # the store keeps both keys (the predecessor is the owner's to archive)
    stored = stored_keys(config, zone)
    assert len(stored) == 2 and stored.get(old_id) == old, stored
    ((new_id, new),) = [(i, k) for i, k in stored.items() if i != old_id]
    new_tag = dns.dnssec.key_id(new)
    if lab.store == "file":
        pems = pem_files(lab, zone)
        assert len(pems) == 2 and set(pems_before) < set(pems), pems
        assert any(p.startswith(new_id) for p in pems), (new_id, pems)

    served = apexes(lab, zone)
    for name, a in served.items():
        assert a.ksks == {new}, f"{name} serves KSKs {sorted(tags(a.ksks))}"
        assert a.signers == {new_tag}, f"{name}: DNSKEY RRset signed by {sorted(a.signers)}"
        assert a.validates(new), f"{name}: the DNSKEY RRset does not validate under {new_tag}"
        assert a.cds == {ds_of(zone, new)}, f"{name}: CDS {sorted(a.cds)}"
        assert a.cdnskey == {new}, f"{name}: CDNSKEY {a.cdnskey}"
        assert a.zsks == served_before[name].zsks, "a provider's ZSK changed"
        assert a.data_signers == served_before[name].data_signers
    assert lab.parent_ds(zone) == [ds_of(zone, new)]

    # phases per Knot: (KSKs, owner signatures, CDS) -- RFC 7583 sec. 3.3.2
    both = frozenset({old_tag, new_tag})
    o_, n_ = frozenset({old_tag}), frozenset({new_tag})

    def ksk_view(s: Sample) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
        return s.keys & both, s.dnskey_signers & both, s.cds

    want = [(o_, o_, o_), (both, both, o_), (both, both, n_), (n_, n_, n_)]
    for name in tl.knots:
        assert tl.phases(name, ksk_view) == want, (name, tl.phases(name, ksk_view))
    assert tl.ds_phases() == [o_, n_], tl.ds_phases()
    published = tl.all_first(lambda s: new_tag in s.keys)
    cds_new = tl.any_first(lambda s: s.cds == n_)
    ds_new = tl.ds_first(lambda ds: ds == n_)
    withdrawn = tl.any_first(lambda s: old_tag not in s.keys)
    print(f"{zone}: both-signed set everywhere -> CDS names successor: "
          f"{cds_new - published:.2f} s (TTLkey {lab.dnskey_ttl}); CDS -> parent DS: "
          f"{ds_new - cds_new:.2f} s (Dreg); parent DS -> predecessor out: "
          f"{withdrawn - ds_new:.2f} s (TTLds {lab.ds_ttl})")
    assert cds_new - published >= lab.dnskey_ttl - SLACK
    assert ds_new >= cds_new - SLACK
    assert withdrawn - ds_new >= lab.ds_ttl - SLACK
    d = durations(entries)
    _report(f"ksk-rollover ({len(lab.providers)} providers, {lab.store} store)", zone, took, d)
    return Rolled(zone, pid, entries, took, old, new, d)


# --------------------------------------------------------------------------- aborts


def start_rollover(config: Path, zone: str, *args: str) -> dict[str, Any]:
    """``rollover ZONE ARGS`` (no --wait: it advances until the first wait); the row."""
    res = ok(ms(config, "rollover", zone, *args))
    assert "started" in res.out, res.text
    row = processes(config, zone)[-1]
    assert row["status"] == "running", row
    return row


def rolled_data(row: dict[str, Any]) -> dict[str, Any]:
    data = row["data"]
    parsed: dict[str, Any] = json.loads(data) if isinstance(data, str) else data
    return dict(parsed["rolled"])


def abort_now(config: Path, zone: str) -> str:
    """``rollover ZONE --abort``; returns the main state the process was aborted in."""
    row = processes(config, zone)[-1]
    assert row["status"] == "running", row
    res = ok(ms(config, "rollover", zone, "--abort"))
    assert "aborting" in res.out, res.text
    entries = [e for e in history(config, zone) if e["process_id"] == row["id"]]
    (cut,) = [e for e in entries if e["to_state"].startswith("abort:")
              and not (e["from_state"] or "").startswith("abort:")]
    assert cut["from_state"] == row["state"], (cut, row["state"])
    return str(cut["from_state"])


def first_after(samples: list[Sample], t: float, pred: Callable[[Sample], bool]) -> float:
    at = next((s.at for s in samples if s.at > t and pred(s)), None)
    assert at is not None, "never seen"
    return at
