"""Helpers of the integration tests (fixtures are in conftest.py): real PowerDNS
providers, the lab's CDS-scanning parent and a validating Unbound, driven through the
``multisigner`` CLI as a user would.

Every module starts its own lab(s) through :func:`running_lab` (module-scoped fixtures) and
gives each test its own zone, so tests within a module do not see each other's changes.
Nothing here mocks the product: state is observed by querying the servers directly.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rrset
import pytest
from prereq import needs

from multisigner_lab import Lab, proc
from multisigner_lab.dnsq import answer, query
from multisigner_lab.powerdns import API_PATH, CryptoKey
from multisigner_lab.zones import ds_text

REPO = Path(__file__).resolve().parents[2]
MULTISIGNER = Path(sys.executable).with_name("multisigner")

NEEDS_SERVERS = needs("pdns_server", "unbound", what="Debian packages pdns-server, unbound")

SETTLED = re.compile(r"resolvers may hold pre-sync DNSKEY/DS RRsets until (\S+);")


# --------------------------------------------------------------------------- labs


@contextmanager
def running_lab(
    factory: pytest.TempPathFactory, name: str, **kwargs: Any
) -> Iterator[Lab]:
    """A lab in a fresh temp dir, always stopped afterwards (and checked to be gone)."""
    lab = Lab.start(factory.mktemp(name), **kwargs)
    try:
        yield lab
    finally:
        lab.stop()
    assert lab.alive() == [], f"lab processes survived stop(): {lab.alive()}"


def restart_provider(lab: Lab, name: str) -> None:
    """Start a stopped provider again from its own directory (same DB, ports and key)."""
    index = next(i for i, p in enumerate(lab.procs) if p.name == name)
    old = lab.procs[index]
    assert not old.alive(), f"{name} still runs"
    server = lab.server(name)
    new = proc.spawn(name, ["pdns_server", f"--config-dir={old.directory}"], old.directory)
    lab.procs[index] = new  # so Lab.stop() stops the new process
    proc.wait_ready(
        new,
        proc.all_of(
            proc.http_probe(server.api_url + API_PATH, {"X-API-Key": server.api_key}),
            proc.dns_probe(server.address, server.dns_port),
        ),
        timeout=10,
    )


def stop_provider(lab: Lab, name: str) -> None:
    p = next(p for p in lab.procs if p.name == name)
    proc.stop(p)
    assert not p.alive()


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


Run = Callable[..., Result]


def ms_subprocess(config: Path, *args: str, timeout: float = 120) -> Result:
    """The installed ``multisigner`` console script as a real process."""
    done = subprocess.run(
        [str(MULTISIGNER), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    return Result(done.returncode, done.stdout, done.stderr)


# A sync step has no keys, preconditions or hold: the engine persists it in two phases,
# act (which converges) and observe (whose transition enters the next step).
SYNC_PHASES = ("act", "observe")


def sync_states(model: int = 2) -> list[str]:
    """The states a sync runs through: its runbook's steps, each in the engine's phases."""
    steps = ("import-keys", "publish-cds", "parent") if model == 2 else ("deliver", "parent")
    return [f"{s}:{p}" for s in steps for p in SYNC_PHASES] + ["done"]


def history(run: Run, config: Path, zone: str) -> list[dict[str, Any]]:
    res = run(config, "history", zone, "--json")
    assert res.rc == 0, res
    data: list[dict[str, Any]] = res.json()
    return data


def sync_ok(run: Run, config: Path, zone: str) -> Result:
    res = run(config, "sync", zone)
    assert res.rc == 0, res
    assert f"{zone}: synced" in res.out, res
    return res


def wait_settled(res: Result, lab: Lab, *, required: bool = True) -> None:
    """Sleep past the time sync says resolvers may still hold pre-sync RRsets."""
    match = SETTLED.search(res.out)
    if match is None:
        assert not required, f"sync did not say when caches settle: {res.out}"
        time.sleep(max(lab.ttl, lab.ds_ttl) + 0.5)
        return
    until = datetime.fromisoformat(match.group(1))
    remaining = (until - datetime.now(UTC)).total_seconds()
    assert remaining <= max(lab.ttl, lab.ds_ttl) + 2, f"settles too late: {match.group(0)}"
    time.sleep(max(remaining, 0) + 1.1)  # the printed time is rounded down to the second


# --------------------------------------------------------------------------- config files


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_table(data: dict[str, Any], prefix: str, out: list[str]) -> None:
    for key, value in data.items():
        if not isinstance(value, dict) and not _is_table_list(value):
            out.append(f"{key} = {_toml_value(value)}")
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.append(f"\n[{path}]")
            _toml_table(value, path, out)
        elif _is_table_list(value):
            for item in value:
                out.append(f"\n[[{path}]]")
                _toml_table(item, path, out)


def dump_toml(data: dict[str, Any]) -> str:
    out: list[str] = []
    _toml_table(data, "", out)
    return "\n".join(out) + "\n"


def lab_config(lab: Lab) -> dict[str, Any]:
    return tomllib.loads(lab.config_path.read_text())


def write_config(
    lab: Lab,
    path: Path,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    *,
    zones: list[str] | None = None,
) -> Path:
    """A copy of the lab's config, restricted to ``zones`` and changed by ``mutate``."""
    data = lab_config(lab)
    if zones is not None:
        data["zones"] = [z for z in data["zones"] if z["name"] in zones]
    if mutate is not None:
        mutate(data)
    path.write_text(dump_toml(data))
    path.chmod(0o600)
    return path


def zone_entry(data: dict[str, Any], zone: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(z for z in data["zones"] if z["name"] == zone)
    return entry


def provider_entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(p for p in data["providers"] if p["name"] == name)
    return entry


def state_db(config: Path) -> Path:
    url = tomllib.loads(config.read_text())["state"]["url"]
    assert url.startswith("sqlite:///"), url
    return Path(url.removeprefix("sqlite:///"))


def sql(db: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        with conn:
            return list(conn.execute(statement, params))
    finally:
        conn.close()


# --------------------------------------------------------------------------- observing


def api_snapshot(lab: Lab, zone: str) -> dict[str, Any]:
    """Everything every provider's API holds for ``zone``: rrsets (SOA serial included)
    and its own keys. Used to prove a refused command changed nothing."""
    snap: dict[str, Any] = {}
    for server in lab.providers:
        with lab.pdns_api(server.name) as api:
            resp = api.get(f"/zones/{zone}")
            if resp.status_code == 404:
                snap[server.name] = "no such zone"
                continue
            resp.raise_for_status()
            rrsets = sorted(
                (
                    r["name"],
                    r["type"],
                    r["ttl"],
                    tuple(sorted((c["content"], c["disabled"]) for c in r["records"])),
                )
                for r in resp.json()["rrsets"]
            )
            keys = api.get(f"/zones/{zone}/cryptokeys")
            keys.raise_for_status()
            snap[server.name] = {
                "rrsets": rrsets,
                "keys": sorted(
                    (k["id"], k["active"], k["published"], k["dnskey"]) for k in keys.json()
                ),
            }
    return snap


def nameservers(lab: Lab) -> dict[str, list[tuple[str, int]]]:
    """Every nameserver of every provider, as the controller's config lists them."""
    out: dict[str, list[tuple[str, int]]] = {}
    for p in lab_config(lab)["providers"]:
        hosts = []
        for ns in p["nameservers"]:
            host, _, port = ns.rpartition(":")
            hosts.append((host, int(port)))
        out[p["name"]] = hosts
    return out


@dataclass(frozen=True)
class Served:
    """The apex material one nameserver serves."""

    where: str
    dnskey: dns.rrset.RRset | None
    dnskey_sigs: dns.rrset.RRset | None = field(compare=False)  # ECDSA: not deterministic
    cds: dns.rrset.RRset | None
    cdnskey: dns.rrset.RRset | None

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(_key_text(rd) for rd in (self.dnskey or []))

    @property
    def cds_texts(self) -> frozenset[str]:
        return frozenset(_ds_rd_text(rd) for rd in (self.cds or []))

    @property
    def cdnskey_texts(self) -> frozenset[str]:
        return frozenset(_key_text(rd) for rd in (self.cdnskey or []))


def _key_text(rd: Any) -> str:
    return f"{rd.flags} {rd.protocol} {int(rd.algorithm)} " + "".join(
        rd.to_text().split()[3:]
    )


def _ds_rd_text(rd: Any) -> str:
    return f"{rd.key_tag} {int(rd.algorithm)} {rd.digest_type} {rd.digest.hex()}"


def served(lab: Lab, zone: str, *, require_aa: bool = True) -> list[tuple[str, Served]]:
    """(provider, what it serves) for every nameserver of every provider. A server that
    does not serve the zone fails the assertion, or (``require_aa=False``) shows as
    serving nothing, with the rcode in ``where``."""
    out = []
    for provider, hosts in nameservers(lab).items():
        for host, port in hosts:
            r_key = query(host, port, zone, "DNSKEY")
            r_cds = query(host, port, zone, "CDS")
            r_cdnskey = query(host, port, zone, "CDNSKEY")
            if not require_aa and not all(r.flags & dns.flags.AA
                                          for r in (r_key, r_cds, r_cdnskey)):
                where = f"{provider} {host}:{port} {dns.rcode.to_text(r_key.rcode())} no AA"
                out.append((provider, Served(where, None, None, None, None)))
                continue
            for r in (r_key, r_cds, r_cdnskey):
                assert r.flags & dns.flags.AA, f"{provider} {host}:{port} not authoritative"
            out.append((provider, Served(
                where=f"{provider} {host}:{port}",
                dnskey=answer(r_key, zone, "DNSKEY"),
                dnskey_sigs=answer(r_key, zone, "RRSIG", covers="DNSKEY"),
                cds=answer(r_cds, zone, "CDS"),
                cdnskey=answer(r_cdnskey, zone, "CDNSKEY"),
            )))
    return out


def own_keys(lab: Lab, zone: str) -> dict[str, list[CryptoKey]]:
    return {p.name: lab.keys(p.name, zone) for p in lab.providers}


def is_ksk(key: CryptoKey) -> bool:
    return key.flags == 257


def assert_synced(lab: Lab, zone: str, *, import_ksks: bool = True) -> None:
    """The Model 2 steady state, observed at every nameserver and at the parent."""
    keys = own_keys(lab, zone)
    every = {k.dnskey for ks in keys.values() for k in ks if k.published}
    ksks = {k.dnskey for ks in keys.values() for k in ks if is_ksk(k) and k.active}
    assert len(ksks) == len(keys), f"one signing KSK/CSK per provider expected: {keys}"
    want_cds = {ds_text(zone, k) for k in ksks}
    apex = dns.name.from_text(zone)
    answers = served(lab, zone)
    for provider, s in answers:
        if import_ksks:
            want = every
        else:
            want = {k.dnskey for k in keys[provider] if k.published} | {
                k.dnskey for p, ks in keys.items() if p != provider for k in ks
                if k.published and not is_ksk(k)
            }
        assert s.keys == want, f"{s.where} serves DNSKEYs {sorted(s.keys)}, want {sorted(want)}"
        assert s.dnskey is not None and s.dnskey_sigs is not None, s.where
        dns.dnssec.validate(s.dnskey, s.dnskey_sigs, {apex: s.dnskey})
        # one SHA-256 CDS per KSK, and the matching CDNSKEYs, at every server
        assert s.cds_texts == want_cds, f"{s.where} CDS {sorted(s.cds_texts)}"
        assert all(t.split()[2] == "2" for t in s.cds_texts)
        assert s.cdnskey_texts == ksks, f"{s.where} CDNSKEY {sorted(s.cdnskey_texts)}"
    if import_ksks:
        assert len({s.keys for _, s in answers}) == 1, "DNSKEY RRsets differ between servers"
    assert sorted(lab.parent_ds(zone)) == sorted(want_cds)


def resolve(lab: Lab, qname: str, rdtype: str = "A") -> dns.message.Message:
    host, port = lab.resolver
    q = dns.message.make_query(qname, rdtype, want_dnssec=True)
    q.flags |= dns.flags.AD
    return dns.query.udp(q, host, port=port, timeout=5)


def assert_validates(lab: Lab, zone: str) -> None:
    """Unbound returns ``www.ZONE A`` with the AD bit (for every provider: repeated
    queries after a cache flush are not possible, so several names are asked)."""
    for name in (f"www.{zone}", f"mail.{zone}", zone):
        resp = resolve(lab, name)
        assert resp.rcode() == 0, resp
        assert resp.flags & dns.flags.AD, f"no AD bit for {name}: {resp}"
        assert answer(resp, name, "A") is not None, resp
