"""Helpers of the rollover tests: the CLI (in-process and as a real process), config
copies, history and process reading, what the nameservers serve, and the expected state
sequences of the runbooks (written out here, independently of runbooks/*.toml)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from prereq import needs

from multisigner_lab import Lab
from multisigner_lab.base import LabBase
from multisigner_lab.zones import ds_text
from orchestrator.cli import main
from rollover.probe import Failure, ResolverProbe
from rollover.watcher import Breach, Watcher

REPO = Path(__file__).resolve().parents[2]
MULTISIGNER = Path(sys.executable).with_name("multisigner")


NEEDS_SERVERS = needs("pdns_server", "unbound", what="Debian packages pdns-server, unbound")
LAB = [pytest.mark.lab, NEEDS_SERVERS]

PHASES = ("act", "converge", "observe", "hold")
MAIN_STEPS = {
    "zsk": ("publish", "activate", "withdraw"),
    "ksk": ("publish", "swap-ds", "withdraw"),
    "csk": ("publish", "swap-ds", "withdraw"),
}
ABORT_STEPS = {
    ("zsk", "publish"): ("discard-new",),
    ("zsk", "activate"): ("revert-signing", "discard-new-after-revert"),
    ("ksk", "publish"): ("discard-new",),
    ("ksk", "swap-ds"): ("revert-ds", "discard-new-after-revert"),
    ("csk", "publish"): ("discard-new",),
    ("csk", "swap-ds"): ("revert-ds", "discard-new-after-revert"),
}
# The RFC 7583 hold of each step, as docs/design-notes.md ("Timing") and the runbooks define it.
HOLD_TERMS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("zsk", "publish"): (("TTLkey",), "sum"),
    ("zsk", "activate"): (("TTLsig",), "sum"),
    ("zsk", "revert-signing"): (("TTLsig",), "sum"),
    ("ksk", "publish"): (("TTLkey",), "sum"),
    ("ksk", "swap-ds"): (("TTLds",), "sum"),
    ("ksk", "revert-ds"): (("TTLds",), "sum"),
    ("csk", "publish"): (("TTLkey", "TTLsig"), "max"),
    ("csk", "swap-ds"): (("TTLds",), "sum"),
    ("csk", "revert-ds"): (("TTLds",), "sum"),
}


TERM_FIELDS = {"TTLkey": "key", "TTLsig": "sig", "TTLds": "ds"}  # evidence["ttls"] keys


def lab_ttls(lab: LabBase[Any]) -> dict[str, int]:
    """The TTL terms the lab's zones must produce, from how the lab built them: TTLkey the
    DNSKEY TTL; TTLsig the largest TTL of any signed RRset (the DNSKEY RRset is one, so
    never below TTLkey); TTLds the parent's DS TTL."""
    return {"TTLkey": lab.dnskey_ttl, "TTLsig": max(lab.ttl, lab.dnskey_ttl),
            "TTLds": lab.ds_ttl}


class BugReproduced(AssertionError):
    """Raised by an xfail test exactly where the product's bug shows; the xfail marks use
    ``raises=BugReproduced`` so a failure anywhere else still fails the test."""


def bug_unless(condition: object, message: str) -> None:
    if not condition:
        raise BugReproduced(message)


def main_states(key: str) -> list[str]:
    return [f"{s}:{p}" for s in MAIN_STEPS[key] for p in PHASES] + ["done"]


def abort_states(key: str, during: str, reached: str) -> list[str]:
    """The states of a rollover aborted in step ``during`` whose last main state was
    ``reached`` (e.g. "activate:hold")."""
    main = [f"{s}:{p}" for s in MAIN_STEPS[key] for p in PHASES]
    out = main[: main.index(reached) + 1]
    out += [f"abort:{s}:{p}" for s in ABORT_STEPS[key, during] for p in PHASES]
    return [*out, "aborted"]


# --------------------------------------------------------------------------- labs

SETTLED = re.compile(r"resolvers may hold pre-sync DNSKEY/DS RRsets until (\S+);")


@contextlib.contextmanager
def running_lab(factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> Iterator[Lab]:
    """A lab in a fresh temp dir, always stopped (and checked to be gone) afterwards."""
    lab = Lab.start(factory.mktemp(name), **kwargs)
    try:
        yield lab
    finally:
        lab.stop()
        assert lab.alive() == [], f"lab processes survived stop(): {lab.alive()}"


def sync_zones(lab: Lab, zones: list[str]) -> None:
    """Bring ``zones`` to the Model 2 steady state and wait until no resolver can hold a
    pre-sync DNSKEY/DS RRset any more (so a rollover may start)."""
    config = write_config(lab, "sync.toml", zones=zones)
    res = ok(cli(config, "sync", "--all"))
    settle = [datetime.fromisoformat(m) for m in SETTLED.findall(res.out)]
    for zone in zones:
        assert f"{zone}: synced" in res.out, res.out
    until = max(settle, default=datetime.now(UTC))
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.1)
    for zone in zones:
        wait_until(lambda z=zone: cli(config, "verify", z).rc == 0, 10, f"{zone} verifies",
                   interval=0.3)



# --------------------------------------------------------------------------- the CLI


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> Any:
        return json.loads(self.out)


def cli(config: Path, *args: str) -> Result:
    """``multisigner --config CONFIG ARGS`` in this process (fast); output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--config", str(config), *args])
    return Result(rc, out.getvalue(), err.getvalue())


def cli_proc(config: Path, *args: str, timeout: float = 120) -> Result:
    """The installed console script as a real process."""
    done = subprocess.run([str(MULTISIGNER), "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=REPO)
    return Result(done.returncode, done.stdout, done.stderr)


def ok(res: Result) -> Result:
    assert res.rc == 0, f"exit {res.rc}\nstdout:\n{res.out}\nstderr:\n{res.err}"
    return res


# --------------------------------------------------------------------------- configs


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _table(data: dict[str, Any], prefix: str, out: list[str]) -> None:
    def nested(v: Any) -> bool:
        return isinstance(v, dict) or (isinstance(v, list) and bool(v)
                                       and all(isinstance(x, dict) for x in v))

    for k, v in data.items():
        if not nested(v):
            out.append(f"{k} = {_value(v)}")
    for k, v in data.items():
        path = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.append(f"\n[{path}]")
            _table(v, path, out)
        elif nested(v):
            for item in v:
                out.append(f"\n[[{path}]]")
                _table(item, path, out)


def dump_toml(data: dict[str, Any]) -> str:
    out: list[str] = []
    _table(data, "", out)
    return "\n".join(out) + "\n"


def write_config(lab: Lab, name: str, *, zones: list[str] | None = None,
                 policy: dict[str, Any] | None = None,
                 mutate: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A copy of the lab's config next to it (same state database): only ``zones``,
    every zone's policy updated with ``policy``, then ``mutate`` applied."""
    data = tomllib.loads(lab.config_path.read_text())
    if zones is not None:
        data["zones"] = [z for z in data["zones"] if z["name"] in zones]
    for z in data["zones"]:
        z.setdefault("policy", {}).update(policy or {})
    if mutate is not None:
        mutate(data)
    path = lab.directory / name
    path.write_text(dump_toml(data))
    path.chmod(0o600)
    return path


def provider_entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(p for p in data["providers"] if p["name"] == name)
    return entry


def with_api_url(lab: Lab, name: str, provider: str, url: str, *,
                 timeout: str | None = None) -> Path:
    """A config (fast policy) where ``provider``'s API is at ``url``."""

    def mutate(data: dict[str, Any]) -> None:
        entry = provider_entry(data, provider)
        entry["api_url"] = url
        if timeout:
            entry["timeout"] = timeout

    return write_config(lab, name, policy=FAST, mutate=mutate)


FAST = {"safety_margin": "0s"}


# --------------------------------------------------------------------------- state


def state_db(config: Path) -> Path:
    url = tomllib.loads(config.read_text())["state"]["url"]
    assert url.startswith("sqlite:///"), url
    return Path(url.removeprefix("sqlite:///"))


def select(config: Path, statement: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read-only look into the state database."""
    conn = sqlite3.connect(f"file:{state_db(config)}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(statement, params))
    finally:
        conn.close()


def processes(config: Path, zone: str) -> list[dict[str, Any]]:
    rows = select(config, "SELECT * FROM process WHERE zone = ? ORDER BY started_at", (zone,))
    return [dict(r) for r in rows]


def latest(config: Path, zone: str, kind: str | None = None) -> dict[str, Any]:
    procs = [p for p in processes(config, zone) if kind is None or p["kind"] == kind]
    assert procs, f"no {kind or ''} process for {zone}"
    return procs[-1]


def history(config: Path, zone: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = ok(cli(config, "history", zone, "--json")).json()
    return data


def entries_of(config: Path, zone: str, process_id: str) -> list[dict[str, Any]]:
    return [e for e in history(config, zone) if e["process_id"] == process_id]


def to_states(entries: list[dict[str, Any]]) -> list[str]:
    return [e["to_state"] for e in entries]


def when(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_holds(entries: list[dict[str, Any]], key: str, ttls: dict[str, int]) -> int:
    """Every transition into a ``hold`` carries a deadline of at least observed_at + the
    step's TTL terms (from the lab's TTLs, not the product's) + delay + margin, and the
    process left the hold no earlier than that deadline. Returns the holds checked."""
    checked = 0
    for i, e in enumerate(entries):
        if not e["to_state"].endswith(":hold"):
            continue
        step = e["to_state"].split(":")[-2]
        terms, combine = HOLD_TERMS.get((key, step), ((), "sum"))
        ev = e["evidence"]
        values = [ttls[t] for t in terms]
        need = (max(values) if combine == "max" else sum(values)) if values else 0
        observed = when(ev["observed_at"])
        deadline = when(ev["deadline"])
        margin = ev["propagation_delay_s"] + ev["safety_margin_s"] if terms else 0.0
        assert ev["hold"] == list(terms), f"{e['to_state']}: hold terms {ev['hold']}"
        assert deadline >= observed + timedelta(seconds=need + margin), (
            f"{e['to_state']}: deadline {deadline} < observed {observed} + {need}s + {margin}s")
        for t in terms:
            assert ev["ttls"][{"TTLkey": "key", "TTLsig": "sig", "TTLds": "ds"}[t]] >= ttls[t]
        assert when(e["at"]) >= observed
        aborted_here = i + 1 < len(entries) and entries[i + 1]["to_state"].startswith(
            "abort:") and not e["to_state"].startswith("abort:")
        if i + 1 < len(entries) and not aborted_here:  # an abort may cut a hold short
            left = when(entries[i + 1]["at"])
            assert left >= deadline, f"left {e['to_state']} at {left}, before {deadline}"
        checked += 1
    return checked


def check_exact_holds(entries: list[dict[str, Any]], key: str,
                      ttls: dict[str, int]) -> dict[str, float]:
    """Stricter than :func:`check_holds`, for labs whose TTLkey, TTLsig and TTLds differ:
    every hold names exactly the step's terms (``HOLD_TERMS``, written out independently
    of the runbooks), the TTLs the product measured are exactly the lab's (none larger,
    none smaller), and ``deadline - observed_at`` is exactly those terms + propagation
    delay + safety margin. With distinct TTLs a hold on the wrong term shows as a wrong
    length. Returns the hold length per held step (``{"publish": 3.0, ...}``)."""
    lengths: dict[str, float] = {}
    for e in entries:
        if not e["to_state"].endswith(":hold"):
            continue
        step = e["to_state"].split(":")[-2]
        terms, combine = HOLD_TERMS.get((key, step), ((), "sum"))
        ev = e["evidence"]
        assert ev["hold"] == list(terms), f"{e['to_state']}: hold terms {ev['hold']}"
        seen = {t: ev["ttls"][f] for t, f in TERM_FIELDS.items()}
        assert seen == ttls, f"{e['to_state']}: measured TTLs {seen}, the lab's are {ttls}"
        values = [ttls[t] for t in terms]
        need = (max(values) if combine == "max" else sum(values)) if values else 0
        margin = ev["propagation_delay_s"] + ev["safety_margin_s"] if terms else 0.0
        held = (when(ev["deadline"]) - when(ev["observed_at"])).total_seconds()
        assert abs(held - (need + margin)) < 0.001, (
            f"{e['to_state']}: held {held} s, the term {'+'.join(terms) or '-'} is "
            f"{need} s + {margin} s")
        lengths[step] = held
    return lengths


# --------------------------------------------------------------------------- DNS


def ask(where: tuple[str, int], qname: str, rdtype: str) -> dns.message.Message:
    q = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
    q.flags &= ~dns.flags.RD
    resp, _ = dns.query.udp_with_fallback(q, where[0], port=where[1], timeout=2)
    return resp


def rrset_of(resp: dns.message.Message, qname: str, rdtype: str,
             covers: str | None = None) -> dns.rrset.RRset | None:
    return resp.get_rrset(resp.answer, dns.name.from_text(qname), dns.rdataclass.IN,
                          dns.rdatatype.RRSIG if covers else dns.rdatatype.from_text(rdtype),
                          dns.rdatatype.from_text(covers) if covers else dns.rdatatype.NONE)


def key_text(rd: Any) -> str:
    """A DNSKEY as the PowerDNS API writes it (one base64 token)."""
    return f"{rd.flags} {rd.protocol} {int(rd.algorithm)} " + "".join(rd.to_text().split()[3:])


def endpoints(lab: Lab) -> dict[str, list[tuple[str, int]]]:
    return {p.name: [(p.address, p.dns_port)] for p in lab.providers}


@dataclass(frozen=True)
class ServedApex:
    provider: str
    keys: frozenset[str]  # DNSKEY texts
    dnskey_signers: frozenset[int]
    soa_signers: frozenset[int]
    cds: frozenset[str]


def served(lab: Lab, zone: str,
           where: dict[str, list[tuple[str, int]]] | None = None) -> list[ServedApex]:
    out = []
    for provider, eps in (where or endpoints(lab)).items():
        for ep in eps:
            keys = ask(ep, zone, "DNSKEY")
            soa = ask(ep, zone, "SOA")
            cds = ask(ep, zone, "CDS")
            out.append(ServedApex(
                provider,
                frozenset(key_text(rd) for rd in rrset_of(keys, zone, "DNSKEY") or []),
                frozenset(int(s.key_tag) for s in rrset_of(keys, zone, "", "DNSKEY") or []),
                frozenset(int(s.key_tag) for s in rrset_of(soa, zone, "", "SOA") or []),
                frozenset(f"{d.key_tag} {d.algorithm} {d.digest_type} {d.digest.hex()}"
                          for d in rrset_of(cds, zone, "CDS") or []),
            ))
    return out


def active(lab: Lab, provider: str, zone: str, flags: int | None = None) -> list[str]:
    """DNSKEY texts of ``provider``'s own active keys (optionally of one flags value)."""
    return [k.dnskey for k in lab.keys(provider, zone)
            if k.active and (flags is None or k.flags == flags)]


def signing_ds(lab: Lab, zone: str) -> list[str]:
    """The DS set the parent should hold: one SHA-256 DS per provider's active SEP key."""
    return sorted(ds_text(zone, k) for p in lab.providers
                  for k in active(lab, p.name, zone, 257))


def api_snapshot(lab: Lab, zone: str) -> dict[str, Any]:
    """Every provider's rrsets and own keys of ``zone`` (proves a refusal changed nothing)."""
    snap: dict[str, Any] = {}
    for p in lab.providers:
        with lab.pdns_api(p.name) as api:
            z = api.get(f"/zones/{zone}")
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


# --------------------------------------------------------------------------- observers


class Observed:
    """The invariant watcher and the Unbound checker over one zone, for a ``with`` block."""

    def __init__(self, lab: Lab, zone: str, *,
                 extra: dict[str, list[tuple[str, int]]] | None = None,
                 resolver: bool = True) -> None:
        servers = endpoints(lab)
        for name, eps in (extra or {}).items():
            servers[name] = servers.get(name, []) + eps
        self.watcher = Watcher(zone, servers, [(lab.parent.address, lab.parent.dns_port)])
        self.probe = ResolverProbe(lab.resolver, zone) if resolver else None
        self.breaches: list[Breach] = []
        self.failures: list[Failure] = []
        self.rounds = 0

    def __enter__(self) -> Observed:
        self.watcher.start()
        if self.probe is not None:
            self.probe.start()
        self.watcher.wait_rounds(2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.breaches, self.rounds = self.watcher.stop()
        if self.probe is not None:
            self.failures, _ = self.probe.stop()
        print(f"watcher {self.watcher.zone}: {self.watcher.summary()}; resolver: "
              f"{self.probe.answers if self.probe else 0} answers, {len(self.failures)} bad")

    def assert_clean(self) -> None:
        assert self.rounds >= 5, self.watcher.summary()
        assert not self.breaches, "invariant breaches:\n" + "\n".join(
            str(b) for b in self.breaches[:20])
        assert not self.watcher.errors, "watcher query errors:\n" + "\n".join(
            self.watcher.errors[:20])
        assert not self.failures, "resolver answers without AD:\n" + "\n".join(
            str(f) for f in self.failures[:20])
        if self.probe is not None:
            assert self.probe.answers > 0


# --------------------------------------------------------------------------- waiting


def exit_within(child: subprocess.Popen[Any], timeout: float) -> tuple[Any, Any]:
    """``child.communicate(timeout)``; if it does not exit in time, its thread stacks
    (``multisigner`` dumps them on SIGUSR1) go into the failure message, then it is
    killed -- so a hang says where it hangs."""
    try:
        out, err = child.communicate(timeout=timeout)
        return out, err
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        child.kill()
        out, err = child.communicate()
        text = err.decode(errors="replace") if isinstance(err, bytes) else str(err or "")
        raise AssertionError(f"{child.args} did not exit within {timeout} s; its stderr "
                             f"and stacks:\n{text[-6000:]}") from None


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


def step_until(config: Path, zone: str, predicate: Callable[[str], bool],
               timeout: float = 30) -> dict[str, Any]:
    """``multisigner step ZONE --json`` (sleeping until each next check) until the state
    satisfies ``predicate``; returns the last step answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] = ok(cli(config, "step", zone, "--json")).json()
        if answer["process"] is None:  # finished before this step (e.g. by --abort)
            last = latest(config, zone)
            answer = {**answer, "process": last["id"], "kind": last["kind"],
                      "state": last["state"], "finished": True, "next_check_at": None}
        if predicate(answer["state"]):
            return answer
        assert not answer["finished"], f"finished in {answer['state']}"
        assert time.monotonic() < deadline, f"not within {timeout} s: last {answer}"
        nxt = answer["next_check_at"]
        pause = (when(nxt) - datetime.now(UTC)).total_seconds() if nxt else 0.1
        time.sleep(min(max(pause, 0.05), 1.0))


def verify_ok(config: Path, zone: str, timeout: float = 15) -> Result:
    """``verify ZONE`` passes (retried while caches of the old RRsets run out)."""
    last: list[Result] = []

    def check() -> bool:
        res = cli(config, "verify", zone)
        last[:] = [res]
        return res.rc == 0

    try:
        wait_until(check, timeout, f"verify {zone} passes", interval=0.5)
    except AssertionError:
        raise AssertionError(f"verify {zone} still fails: {last[0].text}") from None
    return last[0]


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def reclaim_dead_leases(config: Path) -> list[str]:
    """Delete zone leases held by a process of this host that no longer exists.

    Workaround for the bug shown by test_roll_crash.py::test_lease_of_a_killed_controller
    _is_reclaimed: a controller killed with SIGKILL keeps its zone lease for 120 s, so a
    restarted daemon cannot act (and, see test_roll_scheduler.py, stops ticking)."""
    host = socket.gethostname()
    gone = []
    conn = sqlite3.connect(state_db(config), timeout=10)
    try:
        with conn:
            for zone, holder in list(conn.execute("SELECT zone, holder FROM lease")):
                name, pid = [*holder.split(":"), ""][:2]  # HOST:PID[:NONCE:PROOF]
                if name == host and pid.isdigit() and not pid_alive(int(pid)):
                    conn.execute("DELETE FROM lease WHERE zone = ? AND holder = ?",
                                 (zone, holder))
                    gone.append(f"{zone} {holder}")
    finally:
        conn.close()
    return gone


def stop_parent_automation(lab: LabBase[Any]) -> None:
    """Stop the parent's automation (the lab's parent agent, every instance started so
    far): the parent's DS and NS then no longer follow the children's CDS and CSYNC."""
    lab.stop_parent_automation()


def start_parent_automation(lab: LabBase[Any]) -> None:
    """Start it again (no-op while it runs)."""
    lab.start_parent_automation()


@contextlib.contextmanager
def daemon(config: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``multisigner run`` as a real process; always killed (and reaped) on exit."""
    with log.open("ab") as out:
        p = subprocess.Popen([str(MULTISIGNER), "--config", str(config), "run", *args],
                             stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                             env=dict(os.environ))
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


# --------------------------------------------------------------------------- one rollover

ROLE_FLAGS = {"zsk": 256, "ksk": 257, "csk": 257}


def roll_and_check(lab: Lab, config: Path, zone: str, key: str,
                   signer: str) -> list[dict[str, Any]]:
    """``rollover ZONE --key KEY --signer SIGNER --wait`` under the watcher and the
    Unbound checker, then everything a finished rollover must show; the process's
    history entries."""
    ttls = lab_ttls(lab)
    before = lab.keys(signer, zone)
    old = [k for k in before if k.active and k.flags == ROLE_FLAGS[key]]
    assert len(old) == 1, before
    old_key = old[0]
    ds_before = lab.parent_ds(zone)
    started = time.monotonic()
    with Observed(lab, zone) as obs:
        res = ok(cli(config, "rollover", zone, "--key", key, "--signer", signer, "--wait"))
        took = time.monotonic() - started
        verify_ok(config, zone)  # the watcher keeps watching while old caches run out
    obs.assert_clean()
    print(f"{zone}: {key} rollover at {signer} took {took:.1f} s")
    assert f"{key}-rollover done" in res.out, res.out

    proc = latest(config, zone, f"{key}-rollover")
    assert (proc["state"], proc["status"], proc["signer"]) == ("done", "done", signer)
    entries = entries_of(config, zone, proc["id"])
    assert to_states(entries) == main_states(key)
    assert entries[0]["from_state"] is None
    assert [e["from_state"] for e in entries[1:]] == to_states(entries)[:-1]
    assert check_holds(entries, key, ttls) == 3

    after = lab.keys(signer, zone)
    assert old_key.id not in {k.id for k in after}, "the predecessor still exists"
    new = [k for k in after if k.id not in {b.id for b in before}]
    assert len(new) == 1 and new[0].active and new[0].flags == ROLE_FLAGS[key], after
    new_key = new[0]
    apexes = served(lab, zone)
    assert len({a.keys for a in apexes}) == 1, "providers serve different DNSKEY RRsets"
    for a in apexes:
        assert old_key.dnskey not in a.keys, f"{a.provider} still serves {old_key.key_tag}"
        assert new_key.dnskey in a.keys, f"{a.provider} does not serve {new_key.key_tag}"
        if a.provider == signer and key in ("zsk", "csk"):
            assert new_key.key_tag in a.soa_signers
            assert old_key.key_tag not in a.soa_signers
        if a.provider == signer and key in ("ksk", "csk"):
            assert new_key.key_tag in a.dnskey_signers
            assert old_key.key_tag not in a.dnskey_signers
        assert a.cds == set(signing_ds(lab, zone)), f"{a.provider} CDS {sorted(a.cds)}"
    if key == "zsk":
        assert lab.parent_ds(zone) == ds_before
    else:
        want = signing_ds(lab, zone)
        assert lab.parent_ds(zone) == want
        assert any(d.startswith(f"{new_key.key_tag} ") for d in want)
        assert not any(d.startswith(f"{old_key.key_tag} ") for d in lab.parent_ds(zone))
    return entries
