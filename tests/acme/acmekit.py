"""Helpers of the ACME tests: the lab's real PowerDNS providers, a host zone and a
separate challenge zone (both signed by every provider), CNAMEs set behind the
controller's back as an operator would, and what every nameserver serves."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time
from pathlib import Path

import dns.dnssec
import dns.name
from integration.itkit import MULTISIGNER, REPO, Result, nameservers

from multisigner_lab import Lab
from multisigner_lab.dnsq import answer, query
from multisigner_lab.powerdns import set_rrset

HOST = "example.test."
CHAL = "challenge.test."


def digest(seed: str) -> str:
    """A DNS-01 value: base64url SHA-256, as an ACME client computes it."""
    return base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()).decode().rstrip("=")


def set_everywhere(lab: Lab, zone: str, name: str, rtype: str, contents: list[str],
                   providers: list[str] | None = None) -> None:
    """Set (empty: delete) one RRset at the providers' APIs directly."""
    for server in lab.providers:
        if providers is not None and server.name not in providers:
            continue
        with lab.pdns_api(server.name) as api:
            set_rrset(api, zone, name, rtype, ttl=lab.ttl, contents=contents)


def wait_served(lab: Lab, name: str, rtype: str, timeout: float = 30.0) -> None:
    """Until every nameserver of every provider answers ``name`` with an ``rtype`` RRset:
    a record set at the APIs behind the controller's back is not served at once, and a
    resolver that asks meanwhile caches the NXDOMAIN for the zone's negative TTL."""
    deadline = time.monotonic() + timeout
    lagging: list[str] = []
    while time.monotonic() < deadline:
        lagging = [f"{host}:{port}" for hosts in nameservers(lab).values()
                   for host, port in hosts
                   if answer(query(host, port, name, rtype), name, rtype) is None]
        if not lagging:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} {rtype} not served within {timeout:g} s at {lagging}")


def txt_served(lab: Lab, zone: str, name: str) -> dict[str, set[str]]:
    """Per nameserver ("provider host:port"): the TXT values it serves at ``name``; each
    answer checked to validate under that server's own DNSKEY RRset."""
    out: dict[str, set[str]] = {}
    apex = dns.name.from_text(zone)
    for provider, hosts in nameservers(lab).items():
        for host, port in hosts:
            resp = query(host, port, name, "TXT")
            rrset = answer(resp, name, "TXT")
            values: set[str] = set()
            if rrset is not None:
                keys = answer(query(host, port, zone, "DNSKEY"), zone, "DNSKEY")
                sigs = answer(resp, name, "RRSIG", covers="TXT")
                assert keys is not None and sigs is not None, f"{provider}: unsigned"
                dns.dnssec.validate(rrset, sigs, {apex: keys})
                values = {b"".join(rd.strings).decode() for rd in rrset}
            out[f"{provider} {host}:{port}"] = values
    return out


def everywhere(lab: Lab, zone: str, name: str) -> list[set[str]]:
    return list(txt_served(lab, zone, name).values())


def ms_env(config: Path, env: dict[str, str], *args: str, timeout: float = 120) -> Result:
    """The ``multisigner`` console script as a real process with extra environment."""
    done = subprocess.run([str(MULTISIGNER), "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=REPO, env={**os.environ, **env})
    return Result(done.returncode, done.stdout, done.stderr)


def ms_start(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(MULTISIGNER), "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
