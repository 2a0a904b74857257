"""``sync`` makes a zone multi-signer across two PowerDNS providers and a Knot DNS 3.2 that
signs with its own keys and is written only by TSIG-signed DNS UPDATE (type "rfc2136");
a validating Unbound then answers with AD both through the PowerDNS servers and through
Knot alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest
from knot2 import KnotSigner, add_to_config, provider_block
from prereq import needs

from core.keys import Key
from multisigner_lab import Lab, proc, zones
from multisigner_lab.unbound import Unbound
from orchestrator.cli import main

pytestmark = [
    pytest.mark.lab,
    needs("pdns_server", "unbound", "knotd", "knotc", "keymgr",
          what="Debian packages pdns-server, unbound, knot"),
]

ZONE = "mixed.test."
WRONG = "wrongkey.test."  # synced with a wrong TSIG secret: must fail, changing nothing


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, KnotSigner, Path]]:
    directory = tmp_path_factory.mktemp("rfc2136")
    lab = Lab.start(directory / "lab", providers=2, zones=[ZONE, WRONG])
    knot: KnotSigner | None = None
    try:
        ns_names = [zones.ns_name(p.name) for p in lab.providers]
        knot = KnotSigner.make("u0", directory / "u0", [ZONE, WRONG], ns_names, lab.ttl)
        knot.start()
        knot.wait_signed(ZONE)
        knot.wait_signed(WRONG)
        config = directory / "multisigner.toml"
        config.write_text(add_to_config(lab.config_path.read_text(),
                                        provider_block(knot, "u0", secret_var="U0_TSIG"),
                                        "u0"))
        config.chmod(0o600)
        yield lab, knot, config
    finally:
        if knot is not None:
            knot.stop()
        lab.stop()


@pytest.fixture(scope="module")
def knot_resolver(setup: tuple[Lab, KnotSigner, Path],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    """A second validating Unbound that reaches the child zone through Knot only."""
    lab, knot, _ = setup
    stubs = {zones.PARENT_ZONE: [(lab.parent.address, lab.parent.dns_port)],
             ZONE: [(knot.address, knot.port)]}
    resolver = Unbound.start(tmp_path_factory.mktemp("unbound-u0"), lab.trust_anchors, stubs)
    try:
        resolver.wait_validating(zones.PARENT_ZONE)
        yield resolver
    finally:
        proc.stop(resolver.proc)


def ad(address: str, port: int, name: str) -> dns.message.Message:
    q = dns.message.make_query(name, "A", want_dnssec=True)
    q.flags |= dns.flags.AD
    return dns.query.udp(q, address, port=port, timeout=5)


def dnskeys(address: str, port: int, zone: str = ZONE) -> frozenset[str]:
    resp = dns.query.tcp(dns.message.make_query(zone, "DNSKEY"), address, port=port, timeout=2)
    return frozenset(rd.to_text() for rr in resp.answer if rr.rdtype == dns.rdatatype.DNSKEY
                     for rd in rr)


def test_sync_across_powerdns_and_knot_by_update(
        setup: tuple[Lab, KnotSigner, Path], knot_resolver: Unbound,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lab, knot, config = setup
    monkeypatch.setenv("U0_TSIG", knot.secret)
    knot_own = dnskeys(knot.address, knot.port)
    assert len(knot_own) == 2
    knot_ksk = next(t for t in knot_own if t.startswith("257 "))
    # Before: the parent's DS names the lab providers' KSKs (p0, p1) only, so Knot's
    # answers cannot validate. (Not asked of the resolver: it would cache the bogus answer
    # past the sync.)
    assert len(lab.parent_ds(ZONE)) == 2
    assert Key.parse(knot_ksk).key_tag not in {int(d.split()[0]) for d in lab.parent_ds(ZONE)}

    rc = main(["--config", str(config), "sync", ZONE])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"{ZONE}: synced" in out, out
    assert "u0: foreign DNSKEYs: add" in out, out

    # Every server of every signer serves one DNSKEY RRset: 3 KSKs + 3 ZSKs, Knot's own
    # still among them (it kept signing with its keys).
    servers = [(p.address, p.dns_port) for p in lab.providers] + [(knot.address, knot.port)]
    sets = {dnskeys(a, p) for a, p in servers}
    assert len(sets) == 1, sets
    (served,) = sets
    assert len(served) == 6 and knot_own <= served
    # The parent's DS now names all three KSKs, Knot's included.
    tags = {int(d.split()[0]) for d in lab.parent_ds(ZONE)}
    assert len(tags) == 3
    assert Key.parse(knot_ksk).key_tag in tags

    # Validating resolvers: through the PowerDNS providers and through Knot alone.
    r_lab = lab.resolver
    for name in (f"www.{ZONE}", f"mail.{ZONE}"):
        for host, port in (r_lab, (knot_resolver.address, knot_resolver.port)):
            resp = ad(host, port, name)
            assert resp.rcode() == 0 and resp.flags & dns.flags.AD, (host, port, resp)

    # A second sync changes nothing (the adapter's diffs are empty).
    rc = main(["--config", str(config), "sync", ZONE])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "u0: foreign DNSKEYs: add" not in out, out

    # Knot rolls its own keys: a rollover asked of it is refused, clearly.
    rc = main(["--config", str(config), "rollover", ZONE, "--key", "zsk", "--signer", "u0"])
    captured = capsys.readouterr()
    assert rc == 1, captured
    assert "u0 cannot generate keys on request" in captured.out + captured.err


def test_wrong_tsig_secret_stops_sync_before_any_change(
        setup: tuple[Lab, KnotSigner, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    lab, knot, config = setup
    monkeypatch.setenv("U0_TSIG", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    servers = [(p.address, p.dns_port) for p in lab.providers] + [(knot.address, knot.port)]
    before = [dnskeys(a, p, WRONG) for a, p in servers]
    rc = main(["--config", str(config), "sync", WRONG])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert rc == 1, text
    assert "BADSIG" in text and "u0" in text, text
    assert "Traceback" not in text
    # The signed read fails before the plan acts: no provider was changed.
    assert [dnskeys(a, p, WRONG) for a, p in servers] == before
