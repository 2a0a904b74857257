"""End to end with a real ACME CA: Let's Encrypt's test CA ``pebble`` (Debian package)
resolving through the lab's validating Unbound, and certbot (PyPI) issuing a certificate
for ``www.example.test`` and ``*.www.example.test`` through ``acme certbot-auth`` /
``certbot-cleanup``; ``_acme-challenge.www.example.test`` is a CNAME into the challenge
zone, so both values must coexist there, at every signer, validating."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from acmekit import CHAL, HOST, everywhere, set_everywhere, wait_served
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from integration.itkit import MULTISIGNER, NEEDS_SERVERS, REPO, history, nameservers
from prereq import missing, require

from multisigner_lab import Lab

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]


def _certbot() -> str | None:
    beside = Path(sys.executable).with_name("certbot")
    return str(beside) if beside.exists() else shutil.which("certbot")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tls(directory: Path) -> Path:
    """A throw-away CA and a 127.0.0.1 certificate for pebble's HTTPS API; the CA file."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "key.pem").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory / "ca.pem"


@pytest.fixture
def pebble(synced: Lab, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """pebble on a free port, resolving through the lab's Unbound; (directory URL, CA)."""
    require(missing("pebble"), "Debian package pebble")
    ca = _tls(tmp_path)
    port = _port()
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{_port()}",
        "certificate": str(tmp_path / "cert.pem"), "privateKey": str(tmp_path / "key.pem"),
        "httpPort": _port(), "tlsPort": _port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}
    (tmp_path / "pebble.json").write_text(json.dumps(config))
    host, dns_port = synced.resolver
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
           "PEBBLE_AUTHZREUSE": "0"}
    log = (tmp_path / "pebble.log").open("w")
    proc = subprocess.Popen(["pebble", "-config", str(tmp_path / "pebble.json"),
                             "-dnsserver", f"{host}:{dns_port}"], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    url = f"https://127.0.0.1:{port}/dir"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, verify=ssl.create_default_context(cafile=str(ca)),
                          timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, (tmp_path / "pebble.log").read_text()
                assert time.monotonic() < deadline, "pebble did not come up"
                time.sleep(0.2)
        yield url, ca
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_certbot_issues_through_the_hooks_for_a_cname_delegated_name(
        synced: Lab, pebble: tuple[str, Path], tmp_path: Path) -> None:
    certbot = _certbot()
    require(None if certbot else "certbot", "PyPI package certbot (the dev extras)")
    assert certbot is not None
    url, ca = pebble
    lab, cfg = synced, synced.config_path
    alias, target = f"_acme-challenge.www.{HOST}", f"www.{CHAL}"
    set_everywhere(lab, HOST, alias, "CNAME", [target])
    hook = f"{shlex.quote(str(MULTISIGNER))} --config {shlex.quote(str(cfg))} acme"
    work = tmp_path / "certbot"
    seen = max((int(str(r["seq"])) for r in history_rows(cfg)), default=0)
    done = subprocess.run([
        certbot, "certonly", "--non-interactive", "--agree-tos", "-m", "admin@example.test",
        "--server", url, "--manual", "--preferred-challenges", "dns",
        "--manual-auth-hook", f"{hook} certbot-auth",
        "--manual-cleanup-hook", f"{hook} certbot-cleanup",
        "--config-dir", str(work / "config"), "--work-dir", str(work / "work"),
        "--logs-dir", str(work / "logs"), "--key-type", "ecdsa",
        "-d", f"www.{HOST}".rstrip("."), "-d", f"*.www.{HOST}".rstrip(".")],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(ca)})
    assert done.returncode == 0, done.stdout + done.stderr
    pem = (work / "config" / "live" / f"www.{HOST}".rstrip(".") / "cert.pem").read_bytes()
    san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(san) == sorted([f"www.{HOST}".rstrip("."), f"*.www.{HOST}".rstrip(".")])
    # both values were published in the challenge zone and cleaned up again
    rows = [r for r in history_rows(cfg) if r["kind"] == "acme" and int(str(r["seq"])) > seen]
    published = {v for r in rows if r["to_state"] == "published" for v in r["evidence"]["values"]
                 if r["evidence"]["name"] == target}
    cleaned = {v for r in rows if r["to_state"] == "cleaned" for v in r["evidence"]["values"]
               if r["evidence"]["name"] == target}
    assert len(published) == 2 and cleaned >= published, rows
    assert all(v == set() for v in everywhere(lab, CHAL, target))


def _documented_lego_wrapper() -> str:
    doc = (REPO / "docs" / "acme.md").read_text()
    found = re.search(r"cat > /usr/local/bin/multisigner-lego <<'EOF'\n(.*?)\nEOF\n", doc, re.S)
    assert found, "docs/acme.md no longer shows the lego wrapper"
    return found.group(1) + "\n"


def history_rows(cfg: Path) -> list[dict[str, object]]:
    from integration.itkit import ms_subprocess

    return history(ms_subprocess, cfg, CHAL)


def test_lego_issues_through_its_exec_provider_for_a_cname_delegated_name(
        synced: Lab, pebble: tuple[str, Path], tmp_path: Path) -> None:
    """lego (Debian package) with ``--dns exec``, EXEC_PATH being the two-line wrapper of
    docs/acme.md: lego runs ``EXEC_PATH present|cleanup FQDN VALUE`` itself, FQDN being
    the CNAME's target (lego follows the CNAME at the challenge name first)."""
    require(missing("lego"), "Debian package lego")
    url, ca = pebble
    lab, cfg = synced, synced.config_path
    host = f"lego.{HOST}"
    alias, target = f"_acme-challenge.{host}", f"lego.{CHAL}"
    set_everywhere(lab, HOST, alias, "CNAME", [target])
    wait_served(lab, alias, "CNAME")
    wrapper = tmp_path / "multisigner-lego"
    wrapper.write_text(_documented_lego_wrapper()
                       .replace("exec multisigner ", f"exec {shlex.quote(str(MULTISIGNER))} ")
                       .replace("/etc/multisigner.toml", shlex.quote(str(cfg))))
    wrapper.chmod(0o755)
    # lego follows the CNAME itself before presenting. Asked through pebble's resolver, that
    # lookup of the (not yet published) target is an NXDOMAIN the resolver caches for the
    # zone's negative TTL, and pebble, validating a second later, gets it: a CA's resolver
    # is not the client's. So lego asks an authoritative server of the host zone directly.
    (resolver_host, resolver_port), *_ = nameservers(lab)["p0"]
    seen = max((int(str(r["seq"])) for r in history_rows(cfg)), default=0)
    done = subprocess.run([
        "lego", "--server", url, "--accept-tos", "--email", "admin@example.test",
        "--path", str(tmp_path / "lego"), "--key-type", "ec256", "--dns", "exec",
        # lego's own propagation check asks the zone's nameservers on port 53, which the
        # lab's servers are not on; the hook has already waited for every one of them
        "--dns.resolvers", f"{resolver_host}:{resolver_port}", "--dns.disable-cp",
        "-d", host.rstrip("."), "-d", f"*.{host}".rstrip("."), "run"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "EXEC_PATH": str(wrapper), "EXEC_PROPAGATION_TIMEOUT": "120",
             "EXEC_POLLING_INTERVAL": "1", "LEGO_CA_CERTIFICATES": str(ca)})
    assert done.returncode == 0, done.stdout + done.stderr
    pem = (tmp_path / "lego" / "certificates" / f"{host.rstrip('.')}.crt").read_bytes()
    san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(san) == sorted([host.rstrip("."), f"*.{host}".rstrip(".")])
    rows = [r for r in history_rows(cfg) if r["kind"] == "acme" and int(str(r["seq"])) > seen]
    published = {v for r in rows if r["to_state"] == "published" for v in r["evidence"]["values"]
                 if r["evidence"]["name"] == target}
    cleaned = {v for r in rows if r["to_state"] == "cleaned" for v in r["evidence"]["values"]
               if r["evidence"]["name"] == target}
    assert len(published) == 2 and cleaned >= published, rows
    assert all(v == set() for v in everywhere(lab, CHAL, target))
