"""Helpers of the Model 1 tests: labs, config copies, the CLI, what every Knot serves
(checked here with dnspython, independently of the product's own observer), Knot's key
database read with ``keymgr`` directly, a watcher of the owner's RRSIGs, an external
validation of one Knot's zone with ldns-verify-zone and BIND's dnssec-verify, the daemon
as a real process, and a ``command_prefix`` wrapper that makes ``keymgr import-skr`` fail
or hang at one provider."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
from rollover.rollkit import (
    MULTISIGNER,
    REPO,
    BugReproduced,
    Result,
    bug_unless,
    cli,
    cli_proc,
    ok,
    wait_until,
    write_config,
)
from survivors import survivors

from multisigner_lab.model1 import KnotServer, Model1Lab
from multisigner_lab.zones import ds_text

__all__ = [
    "LAB_REFRESH_GAP",
    "SYNC_STATES",
    "BugReproduced",
    "Result",
    "bug_unless",
    "cli",
    "cli_proc",
    "ok",
    "resolves_with_ad",
    "wait_until",
    "write_config",
]

TOOLS = ("pdns_server", "unbound", "knotd", "knotc", "keymgr")
IN = dns.rdataclass.IN
BACKDATE_S = 5400  # keymgr sign-ksr's (and the product's) RRSIG inception backdate
FAST = {"signature_validity": "20s", "signature_refresh": "10s"}
DUE = {"signature_validity": "1h", "signature_refresh": "30m"}  # the lab's 60 s: re-sign now
# The lab's SKRs (60 s validity, 30 s refresh) carry a refresh block 22 s after the first
# (validity - refresh - refresh/4, floored: decide/owner_signing.block_times); a test that
# straddles that moment sees the same SKR's second block, not a new SKR.
LAB_REFRESH_GAP = 22


def needs_tools(*extra: str) -> pytest.MarkDecorator:
    return needs(*TOOLS, *extra)


# --------------------------------------------------------------------------- labs


@contextlib.contextmanager
def model1_lab(factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> Iterator[Model1Lab]:
    """A Model 1 lab in a fresh temp dir; always stopped, and checked to be gone."""
    directory = factory.mktemp(name)
    lab = Model1Lab.start(directory, **kwargs)
    try:
        yield lab
    finally:
        lab.stop()
        assert lab.alive() == [], f"lab processes survived stop(): {lab.alive()}"
        assert survivors(str(directory)) == [], survivors(str(directory))


# A Model 1 sync's states: its runbook's steps, each through the engine's four phases.
# A sync step has no keys, preconditions or hold: persisted as act (which converges) and
# observe (whose transition enters the next step).
SYNC_STATES = [f"{s}:{p}" for s in ("deliver", "parent") for p in ("act", "observe")] + ["done"]


def resolves_with_ad(lab: Model1Lab, qname: str) -> bool:
    """Unbound (validating, through the lab's signed parent) answers with the AD bit."""
    address, port = lab.resolver
    q = dns.message.make_query(qname, "A", want_dnssec=True)
    resp = dns.query.udp(q, address, port=port, timeout=3)
    return resp.rcode() == dns.rcode.NOERROR and bool(resp.flags & dns.flags.AD)


def config_copy(lab: Model1Lab, name: str, zones: list[str], policy: dict[str, str] | None = None,
                **provider_changes: dict[str, Any]) -> Path:
    """``rollover.rollkit.write_config`` for a Model 1 lab: only ``zones``, their policy
    updated, and ``k1={"knot_config": ...}``-style changes to providers."""

    def mutate(data: dict[str, Any]) -> None:
        for entry in data["providers"]:
            entry.update(provider_changes.get(entry["name"], {}))

    return write_config(lab, name, zones=zones, policy=policy, mutate=mutate)  # type: ignore[arg-type]


def sync(config: Path, *zones: str, dry_run: bool = False) -> Result:
    """``multisigner sync``: as a real process when a zone of ``config`` keeps its owner
    KSK on a PKCS#11 token (loading the module would fix its configuration for this whole
    worker), else in this process (faster)."""
    args = ["sync", *zones] if zones else ["sync", "--all"]
    args += ["--dry-run"] if dry_run else []
    if 'store = "pkcs11"' in config.read_text():
        return cli_proc(config, *args)
    return cli(config, *args)


def history(config: Path, zone: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = ok(cli(config, "history", zone, "--json")).json()
    return data


def sync_processes(config: Path, zone: str) -> list[dict[str, Any]]:
    """Every sync process of ``zone``: id, reason (of its start), states, actor."""
    out: dict[str, dict[str, Any]] = {}
    for e in history(config, zone):
        if e["kind"] != "sync":
            continue
        p = out.setdefault(e["process_id"], {"id": e["process_id"], "reason": e["reason"],
                                             "actor": e["actor"], "states": [], "entries": []})
        p["states"].append(e["to_state"])
        p["entries"].append(e)
    return list(out.values())


def verify(config: Path, zone: str) -> tuple[int, dict[str, Any]]:
    """``verify ZONE --json`` in this process (it opens no key store): exit code, report."""
    res = cli(config, "verify", zone, "--json")
    (report,) = json.loads(res.out)["zones"]
    return res.rc, report


# --------------------------------------------------------------------------- Knot


def keymgr(k: KnotServer, *args: str) -> str:
    done = subprocess.run(["keymgr", "-c", str(k.conf_path), *args], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, f"keymgr {args}: {done.stdout}{done.stderr}"
    return done.stdout


def dnskey_rdata(text: str) -> Any:
    return dns.rdata.from_text(IN, dns.rdatatype.DNSKEY, text)


def knot_keys(k: KnotServer, zone: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = json.loads(keymgr(k, "-j", zone, "list") or "[]")
    return keys


def knot_dnskey(k: KnotServer, zone: str, key_id: str) -> Any:
    words = keymgr(k, zone, "dnskey", f"id={key_id}").split()
    at = [w.upper() for w in words].index("DNSKEY")
    return dnskey_rdata(" ".join(words[at + 1:]))


def knot_zsks(k: KnotServer, zone: str) -> set[Any]:
    """The DNSKEYs of Knot's published ZSKs of ``zone`` (read with keymgr, not the product)."""
    now = time.time()
    out = set()
    for key in knot_keys(k, zone):
        published = 0 < key["publish"] <= now and not 0 < key["remove"] <= now
        if key["zsk"] and not key["ksk"] and published:
            out.add(knot_dnskey(k, zone, key["id"]))
    return out


def knot_generate(k: KnotServer, zone: str, *args: str) -> tuple[str, int]:
    """``keymgr ZONE generate ARGS`` by hand: (key id, key tag)."""
    key_id = keymgr(k, zone, "generate", *args).split()[-1]
    (key,) = [x for x in knot_keys(k, zone) if x["id"] == key_id]
    return key_id, int(key["tag"])


def ksr_ttl(k: KnotServer, zone: str) -> int:
    """The DNSKEY TTL Knot asks for in its KSR (= its policy's dnskey-ttl)."""
    text = keymgr(k, zone, "generate-ksr", "+0", "+1d")
    line = next(ln for ln in text.splitlines() if " DNSKEY " in ln and not ln.startswith(";"))
    return int(line.split()[1])


# --------------------------------------------------------------------------- DNS


def ask(where: tuple[str, int], qname: str | dns.name.Name, rdtype: str | int,
        timeout: float = 2.0) -> dns.message.Message:
    q = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
    q.flags &= ~dns.flags.RD
    resp, _ = dns.query.udp_with_fallback(q, where[0], port=where[1], timeout=timeout)
    return resp


def endpoint(k: KnotServer) -> tuple[str, int]:
    return k.address, k.dns_port


def servfails(lab: Model1Lab, zone: str) -> list[str]:
    """The Knots that answer SERVFAIL for the zone's SOA (zone not loaded: no SKR yet)."""
    return [k.name for k in lab.providers
            if ask(endpoint(k), zone, "SOA").rcode() == dns.rcode.SERVFAIL]


@dataclass(frozen=True)
class Apex:
    """One Knot's answers for the zone apex: RRset and RRSIGs per type."""

    provider: str
    at: float
    rrsets: dict[str, dns.rrset.RRset]
    sigs: dict[str, dns.rrset.RRset]


def apex(k: KnotServer, zone: str, types: Iterable[str] = ("DNSKEY", "SOA", "CDS", "CDNSKEY")
         ) -> Apex:
    name = dns.name.from_text(zone)
    rrsets, sigs = {}, {}
    at = time.time()
    for t in types:
        resp = ask(endpoint(k), zone, t)
        assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.AA, (k.name, t, resp)
        rtype = dns.rdatatype.from_text(t)
        rrset = resp.get_rrset(resp.answer, name, IN, rtype)
        rrsig = resp.get_rrset(resp.answer, name, IN, dns.rdatatype.RRSIG, rtype)
        assert rrset is not None and rrsig is not None, f"{k.name}: no signed {t}: {resp}"
        rrsets[t], sigs[t] = rrset, rrsig
    return Apex(k.name, at, rrsets, sigs)


def owner_dnskey(lab: Model1Lab, zone: str) -> Any:
    return dnskey_rdata(lab.owner_ksk(zone)[1])


def only(zone: str, keys: Iterable[Any]) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(dns.name.from_text(zone), 60, list(keys))


def owner_sig(lab: Model1Lab, k: KnotServer, zone: str) -> Any:
    """The owner KSK's RRSIG over the DNSKEY RRset that ``k`` serves now."""
    tag = dns.dnssec.key_id(owner_dnskey(lab, zone))
    (sig,) = [s for s in apex(k, zone, ("DNSKEY",)).sigs["DNSKEY"] if s.key_tag == tag]
    return sig


def signatures(lab: Model1Lab, zone: str) -> dict[str, tuple[int, int, bytes]]:
    """Per Knot: (inception, expiration, signature) of the owner's RRSIG over DNSKEY."""
    out = {}
    for k in lab.providers:
        sig = owner_sig(lab, k, zone)
        out[k.name] = (int(sig.inception), int(sig.expiration), bytes(sig.signature))
    return out


def assert_same_skr(first: dict[str, tuple[int, int, bytes]],
                    now: dict[str, tuple[int, int, bytes]], gap: int) -> None:
    """What every Knot serves ``now`` still comes from the SKR it served ``first``: the
    same signature, or that SKR's refresh block (expiration ``gap`` s later)."""
    for provider, (inception, expiration, signature) in first.items():
        got = now[provider]
        same = got == (inception, expiration, signature)
        refreshed = got[:2] == (inception + gap, expiration + gap)
        assert same or refreshed, f"{provider}: a new SKR was imported: {first} -> {now}"


def _same_key(a: Any, b: Any) -> bool:
    return (a.flags, a.protocol, a.algorithm, a.key) == (b.flags, b.protocol, b.algorithm, b.key)


def expect_served(lab: Model1Lab, zone: str) -> dict[str, Apex]:
    """Every Knot serves exactly the combined DNSKEY RRset (owner KSK + every Knot's
    published ZSKs, as keymgr lists them), signed by the owner KSK alone and valid now;
    its SOA signed by its own ZSK alone; CDS/CDNSKEY naming the owner KSK, owner-signed."""
    name = dns.name.from_text(zone)
    owner = owner_dnskey(lab, zone)
    owner_tag = dns.dnssec.key_id(owner)
    zsks = {k.name: knot_zsks(k, zone) for k in lab.providers}
    for provider, keys in zsks.items():
        assert len(keys) == 1, f"{provider} holds {len(keys)} published ZSKs"
    combined = {owner}.union(*zsks.values())
    assert len(combined) == 1 + len(lab.providers)
    out = {}
    for k in lab.providers:
        a = apex(k, zone)
        keys, key_sigs = a.rrsets["DNSKEY"], a.sigs["DNSKEY"]
        assert set(keys) == combined, f"{k.name} serves {sorted(map(dns.dnssec.key_id, keys))}"
        assert {s.key_tag for s in key_sigs} == {owner_tag}, f"{k.name}: DNSKEY signed by others"
        (sig,) = key_sigs
        assert sig.inception <= a.at < sig.expiration, (k.name, sig.inception, a.at)
        dns.dnssec.validate(keys, key_sigs, {name: only(zone, [owner])}, now=a.at)
        # the provider's data: signed by its own ZSK, validating under it and the full set
        own = zsks[k.name]
        soa, soa_sigs = a.rrsets["SOA"], a.sigs["SOA"]
        assert {s.key_tag for s in soa_sigs} == {dns.dnssec.key_id(z) for z in own}, k.name
        dns.dnssec.validate(soa, soa_sigs, {name: only(zone, own)}, now=a.at)
        dns.dnssec.validate(soa, soa_sigs, {name: keys}, now=a.at)
        # CDS and CDNSKEY: the owner KSK alone, signed by it
        assert [rd.to_text() for rd in a.rrsets["CDS"]] == [
            dns.dnssec.make_cds(name, owner, "SHA256").to_text()], k.name
        (cdnskey,) = a.rrsets["CDNSKEY"]
        assert _same_key(cdnskey, owner), k.name
        for t in ("CDS", "CDNSKEY"):
            assert {s.key_tag for s in a.sigs[t]} == {owner_tag}, (k.name, t)
            dns.dnssec.validate(a.rrsets[t], a.sigs[t], {name: only(zone, [owner])}, now=a.at)
        out[k.name] = a
    assert lab.parent_ds(zone) == [ds_text(zone, lab.owner_ksk(zone)[1])]
    return out


def resolve_ad(lab: Model1Lab, zone: str, timeout: float = 15) -> None:
    wait_until(lambda: resolves_with_ad(lab, f"www.{zone}"), timeout,
               f"Unbound answers www.{zone} A with AD", interval=0.2)


# --------------------------------------------------------------------------- external tools


def axfr_refused(k: KnotServer, zone: str) -> str | None:
    """The rcode with which Knot refuses an AXFR of ``zone`` (None: it allows it)."""
    q = dns.message.make_query(zone, "AXFR")
    resp = dns.query.tcp(q, k.address, port=k.dns_port, timeout=3)
    if resp.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(resp.rcode())
    return None


def walk_zone(k: KnotServer, zone: str) -> str:
    """The whole zone as one Knot serves it, assembled from DNS answers alone (Knot allows
    no AXFR without an ACL): follow the NSEC chain from the apex and ask every name for
    every type its NSEC bitmap lists, keeping each RRset with its RRSIGs."""
    origin = dns.name.from_text(zone)
    lines: list[str] = []
    name, seen = origin, set()
    while name not in seen:
        seen.add(name)
        resp = ask(endpoint(k), name, "NSEC")
        nsec = resp.get_rrset(resp.answer, name, IN, dns.rdatatype.NSEC)
        assert nsec is not None, f"{k.name}: no NSEC at {name}: {resp}"
        for rdtype in _bitmap_types(nsec[0]):
            if rdtype == dns.rdatatype.RRSIG:
                continue
            answer = ask(endpoint(k), name, rdtype)
            assert answer.rcode() == dns.rcode.NOERROR, (name, rdtype, answer)
            lines += [rr.to_text() for rr in answer.answer if rr.name == name]
        name = nsec[0].next
        assert name.is_subdomain(origin), name
    return "\n".join(lines) + "\n"


def _bitmap_types(nsec: Any) -> list[int]:
    return [window * 256 + i * 8 + bit for window, bitmap in nsec.windows
            for i, octet in enumerate(bitmap) for bit in range(8) if octet & (0x80 >> bit)]


def external_validation(lab: Model1Lab, k: KnotServer, zone: str, directory: Path) -> str:
    """ldns-verify-zone (chained to the parent's DS) and dnssec-verify on the zone one Knot
    serves; returns a line for the report. Also proves both tools reject a tampered copy."""
    refused = axfr_refused(k, zone)
    assert refused is not None, "Knot allowed AXFR: the lab's config changed; use it instead"
    text = walk_zone(k, zone)
    zone_file = directory / f"{zone}{k.name}.zone"
    zone_file.write_text(text)
    ds_file = directory / f"{zone}ds"
    ds_file.write_text("".join(f"{zone} 3600 IN DS {d}\n" for d in lab.parent_ds(zone)))
    ldns = subprocess.run(["ldns-verify-zone", "-k", str(ds_file), str(zone_file)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert ldns.returncode == 0, f"ldns-verify-zone: {ldns.stdout}{ldns.stderr}\n{text}"
    assert "Zone is verified and complete" in ldns.stdout, ldns.stdout
    bind = subprocess.run(["dnssec-verify", "-o", zone, str(zone_file)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert bind.returncode == 0, f"dnssec-verify: {bind.stdout}{bind.stderr}\n{text}"
    assert "Zone fully signed" in bind.stdout + bind.stderr, bind.stdout + bind.stderr
    # the tools do check: one flipped byte in the owner's RRSIG over DNSKEY fails both
    broken = []
    for line in text.splitlines():
        head, _, sig = line.rpartition(" ")
        tampered = f"{head} {'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
        broken.append(tampered if " RRSIG DNSKEY " in line else line)
    bad_file = directory / f"{zone}{k.name}.bad.zone"
    bad_file.write_text("\n".join(broken) + "\n")
    for argv in (["ldns-verify-zone", str(bad_file)], ["dnssec-verify", "-o", zone, str(bad_file)]):
        bad = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert bad.returncode != 0, f"{argv[0]} accepted a tampered DNSKEY RRSIG"
    names = len({ln.split()[0] for ln in text.splitlines()})
    return (f"{k.name}: AXFR refused ({refused}); {len(text.splitlines())} RRs at {names} names "
            "walked over NSEC: ldns-verify-zone -k DS and dnssec-verify OK")


# --------------------------------------------------------------------------- the owner's RRSIGs


@dataclass(frozen=True)
class Sample:
    at: float
    zone: str
    provider: str
    inception: int
    expiration: int
    problem: str | None

    @property
    def remaining(self) -> float:
        return self.expiration - self.at


class SigWatch:
    """A thread asking every Knot, every ``interval`` s, for each zone's DNSKEY RRset and
    SOA (RD off, DO on). Each answer is a sample; it is a problem unless the owner KSK's
    RRSIG over DNSKEY is valid at the instant of the answer (inception <= now <
    expiration) and validates under the owner KSK alone, and the SOA validates under the
    DNSKEY RRset served with it."""

    def __init__(self, lab: Model1Lab, zones: list[str], interval: float = 0.2) -> None:
        self.targets = [(z, k.name, endpoint(k)) for z in zones for k in lab.providers]
        self.owner = {z: owner_dnskey(lab, z) for z in zones}
        self.interval = interval
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SigWatch:
        self._thread = threading.Thread(target=self._run, name="owner rrsig watch",
                                        daemon=True)
        self._thread.start()
        wait_until(lambda: self.rounds >= 2, 10, "two watch rounds", interval=0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "the RRSIG watch did not stop"

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for zone, provider, where in self.targets:
                try:
                    self.samples.append(self._sample(zone, provider, where))
                except (dns.exception.DNSException, OSError) as exc:
                    self.errors.append(f"{time.time():.3f} {zone} {provider}: {exc!r}")
            self.rounds += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _sample(self, zone: str, provider: str, where: tuple[str, int]) -> Sample:
        name = dns.name.from_text(zone)
        keys_resp = ask(where, zone, "DNSKEY", timeout=1.0)
        at = time.time()
        soa_resp = ask(where, zone, "SOA", timeout=1.0)
        keys = keys_resp.get_rrset(keys_resp.answer, name, IN, dns.rdatatype.DNSKEY)
        sigs = keys_resp.get_rrset(keys_resp.answer, name, IN, dns.rdatatype.RRSIG,
                                   dns.rdatatype.DNSKEY)
        owner = self.owner[zone]
        tag = dns.dnssec.key_id(owner)
        mine = [s for s in sigs or [] if s.key_tag == tag]
        if keys is None or not mine:
            return Sample(at, zone, provider, 0, 0,
                          f"{dns.rcode.to_text(keys_resp.rcode())}: no owner RRSIG over DNSKEY")
        sig = max(mine, key=lambda s: s.expiration)
        problem = None
        if not sig.inception <= at < sig.expiration:
            problem = f"owner RRSIG not valid now: {sig.inception} <= {at:.3f} < {sig.expiration}"
        else:
            try:
                dns.dnssec.validate(keys, sigs, {name: only(zone, [owner])}, now=at)
                soa = soa_resp.get_rrset(soa_resp.answer, name, IN, dns.rdatatype.SOA)
                soa_sigs = soa_resp.get_rrset(soa_resp.answer, name, IN, dns.rdatatype.RRSIG,
                                              dns.rdatatype.SOA)
                if soa is None or soa_sigs is None:
                    problem = "no signed SOA"
                else:
                    dns.dnssec.validate(soa, soa_sigs, {name: keys}, now=at)
            except dns.dnssec.ValidationFailure as exc:
                problem = f"does not validate: {exc}"
        return Sample(at, zone, provider, int(sig.inception), int(sig.expiration), problem)

    # ---------------------------------------------------------------- reading

    def snapshot(self, zone: str | None = None) -> list[Sample]:
        return [s for s in list(self.samples) if zone is None or s.zone == zone]

    def problems(self) -> list[Sample]:
        return [s for s in self.snapshot() if s.problem is not None]

    def latest_remaining(self, zone: str) -> float:
        """The least remaining validity among the latest samples of every Knot of ``zone``."""
        latest: dict[str, Sample] = {}
        for s in self.snapshot(zone):
            latest[s.provider] = s
        return min(s.expiration - time.time() for s in latest.values())

    def min_remaining(self, zone: str | None = None, until: float | None = None) -> float:
        return min(s.remaining for s in self.snapshot(zone)
                   if s.problem is None and (until is None or s.at <= until))

    def generations(self, zone: str, provider: str) -> list[tuple[float, int]]:
        """(first seen, expiration) of each distinct owner signature, in order."""
        out: list[tuple[float, int]] = []
        for s in self.snapshot(zone):
            if s.provider == provider and (not out or out[-1][1] != s.expiration):
                out.append((s.at, s.expiration))
        return out


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def daemon(config: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``multisigner run ARGS`` as a real process in its own session; on exit killed with
    its session if still running, and reaped."""
    with log.open("ab") as out:
        p = subprocess.Popen([str(MULTISIGNER), "--config", str(config), "run", *args],
                             stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                             start_new_session=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


def stop_daemon(p: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM (the daemon finishes its current step), then its exit code."""
    p.send_signal(signal.SIGTERM)
    return p.wait(timeout=timeout)


WRAPPER = """\
#!{python}
# command_prefix wrapper: MODE PIDFILE TOOL ARGS... ; only `keymgr ... import-skr` is touched
import os, sys, time
mode, pidfile, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if "import-skr" in argv:
    if mode == "fail":
        print("error: simulated import-skr failure", file=sys.stderr)
        sys.exit(1)
    if mode == "hang":
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        sys.exit(1)
os.execvp(argv[0], argv)
"""


def import_wrapper(directory: Path, mode: str) -> tuple[list[str], Path]:
    """(command_prefix, pid file) making ``import-skr`` fail ("fail") or hang ("hang")."""
    script = directory / f"import-{mode}.py"
    script.write_text(WRAPPER.format(python=sys.executable))
    script.chmod(0o755)
    pidfile = directory / f"import-{mode}.pid"
    return [str(script), mode, str(pidfile)], pidfile


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def kill_pid(pid: int, timeout: float = 5) -> None:
    """SIGKILL one process we caused to exist (by its pid) and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), timeout, f"pid {pid} gone", interval=0.05)


# --------------------------------------------------------------------------- test 1, shared


def check_sync_from_scratch(lab: Model1Lab, zone: str, workdir: Path) -> list[str]:
    """Test 1 on a zone no SKR has reached yet (every Knot answers SERVFAIL): dry run,
    sync, what every Knot serves, parent DS, verify, Unbound AD, status, an idempotent
    second sync, a dry run while a re-sign is due, and the external validators. Returns
    lines for the report."""
    config = lab.config_path
    assert servfails(lab, zone) == [k.name for k in lab.providers], "zone already loaded"
    owner_tag = dns.dnssec.key_id(owner_dnskey(lab, zone))

    # --dry-run from scratch: a plan, nothing signed, imported, or recorded
    res = ok(sync(config, zone, dry_run=True))
    assert f"{zone}: plan (model 1)" in res.out and f"owner KSK {owner_tag}" in res.out, res.out
    assert f"{zone}: dry run; nothing was changed" in res.out, res.out
    assert servfails(lab, zone) == [k.name for k in lab.providers]
    assert sync_processes(config, zone) == []

    started = time.monotonic()
    res = ok(sync(config, zone))
    took = time.monotonic() - started
    assert f"{zone}: synced" in res.out, res.out
    names = ", ".join(k.name for k in lab.providers)
    assert f"import them at {names}" in res.out, res.out
    served = expect_served(lab, zone)
    for a in served.values():  # the TTL Knot's KSR asks for, though nothing was served yet
        assert a.rrsets["DNSKEY"].ttl == ksr_ttl(lab.provider(a.provider), zone) == lab.ttl
    (proc,) = sync_processes(config, zone)
    assert proc["states"] == SYNC_STATES
    delivered = proc["entries"][1]  # act -> observe: what the converge did
    assert delivered["to_state"] == "deliver:observe", delivered
    assert any(f"SKR (2 blocks, {1 + len(lab.providers)} keys" in change
               for change in delivered["evidence"]["changes"]), delivered

    rc, report = verify(config, zone)
    assert rc == 0 and report["ok"] and report["breaches"] == [], report
    assert report["servers"] == len(lab.providers)
    resolve_ad(lab, zone)

    around = [signatures(lab, zone)]  # status may straddle the switch to the refresh block
    status = ok(cli(config, "status", zone, "--json")).json()["zones"][0]
    around.append(signatures(lab, zone))
    assert status["consistent"] and status["model"] == 1, status
    for signer in status["signers"]:
        expires = {time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(sigs[signer["name"]][1]))
                   for sigs in around}
        assert signer["dnskey_rrsig_expires"] in expires, (signer["name"], signer, expires)
        owners = [d for d in signer["dnskeys"] if d["flags"] == 257]
        assert [(d["key_tag"], d["origin"]) for d in owners] == [(owner_tag, "owner")]

    # idempotent: nothing due, nothing imported; what is served still comes from the
    # first SKR (its first block, or its refresh block 30 s later)
    first = signatures(lab, zone)
    res = ok(sync(config, zone))
    assert f"{zone}: in sync; nothing to change" in res.out, res.out
    assert_same_skr(first, signatures(lab, zone), gap=LAB_REFRESH_GAP)
    assert len(sync_processes(config, zone)) == 1

    # a dry run while a re-sign is due (refresh 30 min > the lab's 60 s validity) plans
    # it and changes nothing
    due = config_copy(lab, f"due-{zone}toml", [zone], DUE)
    res = ok(sync(due, zone, dry_run=True))
    assert "signatures expire within 0:30:00" in res.out, res.out
    assert f"{zone}: dry run; nothing was changed" in res.out, res.out
    assert_same_skr(first, signatures(lab, zone), gap=LAB_REFRESH_GAP)
    assert len(sync_processes(config, zone)) == 1

    lines = [f"{zone}: sync from scratch with {len(lab.providers)} Knots ({lab.store} store) "
             f"took {took:.1f} s"]
    lines.append(external_validation(lab, lab.providers[0], zone, workdir))
    return lines
