"""Two PowerDNS providers whose keys collide pairwise (p1's KSK has p0's KSK's tag, p1's
ZSK p0's ZSK's tag; imported into PowerDNS through its cryptokeys API), brought to the
Model 2 steady state by ``sync`` and then through a ZSK rollover at p1: colliding keys are
imported, published in CDS, shown and withdrawn as the distinct keys they are, and a
validating Unbound answers with AD throughout the checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest
from collide import ImportKey, with_tag
from rollover.rollkit import (
    FAST,
    LAB,
    SETTLED,
    Observed,
    cli,
    ok,
    running_lab,
    verify_ok,
    write_config,
)

from core.keys import Key
from multisigner_lab import Lab

pytestmark = LAB

ZONE = "collide.test."


def served_keys(lab: Lab) -> list[frozenset[Key]]:
    """The DNSKEY RRset at every provider's nameserver."""
    out = []
    for p in lab.providers:
        resp = dns.query.tcp(dns.message.make_query(ZONE, "DNSKEY"), p.address,
                             port=p.dns_port, timeout=2)
        out.append(frozenset(Key.from_rdata(rd) for rr in resp.answer  # type: ignore[arg-type]
                             if rr.rdtype == dns.rdatatype.DNSKEY for rd in rr))
    return out


def validates(lab: Lab) -> None:
    host, port = lab.resolver
    for name in (f"www.{ZONE}", f"mail.{ZONE}"):
        q = dns.message.make_query(name, "A", want_dnssec=True)
        q.flags |= dns.flags.AD
        resp = dns.query.udp(q, host, port=port, timeout=5)
        assert resp.rcode() == 0 and resp.flags & dns.flags.AD, resp


def replace_keys(lab: Lab, provider: str, new: list[ImportKey]) -> None:
    """Make ``new`` the provider's only keys: import (active, published), then delete the
    old ones."""
    old = lab.keys(provider, ZONE)
    with lab.pdns_api(provider) as api:
        for key in new:
            r = api.post(f"/zones/{ZONE}/cryptokeys", json={
                "keytype": "ksk" if key.flags == 257 else "zsk", "active": True,
                "published": True, "privatekey": key.isc()})
            assert r.status_code == 201, r.text
        for key in old:
            r = api.delete(f"/zones/{ZONE}/cryptokeys/{key.id}")
            assert r.status_code == 204, r.text
    assert {Key.parse(k.dnskey) for k in lab.keys(provider, ZONE)} == {k.key for k in new}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "collide", providers=2, zones=[ZONE]) as running:
        yield running


def test_sync_and_zsk_rollover_with_colliding_keys(lab: Lab) -> None:
    p0 = {k.flags: Key.parse(k.dnskey) for k in lab.keys("p0", ZONE)}
    ksk1, zsk1 = with_tag(257, p0[257].key_tag), with_tag(256, p0[256].key_tag)
    replace_keys(lab, "p1", [ksk1, zsk1])
    # p1's keys changed before the zone went multi-signer: the owner registers the DS of
    # both delegated providers' KSKs again, so p1 validates (the parent agent accepts no
    # CDS while a delegated server's DNSKEY RRset does not chain to the DS)
    lab.register_ds(ZONE, sorted({p0[257].ds(ZONE).text, ksk1.key.ds(ZONE).text}))
    ksks = {p0[257], ksk1.key}
    assert len({k.key_tag for k in ksks}) == 1 and len(ksks) == 2
    config = write_config(lab, "fast.toml", policy=FAST)

    res = ok(cli(config, "sync", ZONE))
    assert f"{ZONE}: synced" in res.out, res.out
    # The plan names p1's KSK, tag equal to p0's, with its fingerprint.
    assert f"{ksk1.key.short()}~{ksk1.key.fingerprint}" in res.out, res.out
    settle = [datetime.fromisoformat(m) for m in SETTLED.findall(res.out)]
    time.sleep(max([0.0] + [(t - datetime.now(UTC)).total_seconds() for t in settle]) + 1.1)

    everything = frozenset({p0[257], p0[256], ksk1.key, zsk1.key})
    assert served_keys(lab) == [everything, everything]
    ds = lab.parent_ds(ZONE)
    assert len(ds) == 2 and {int(d.split()[0]) for d in ds} == {p0[257].key_tag}
    verify_ok(config, ZONE)
    validates(lab)

    status = ok(cli(config, "status", ZONE, "--json")).json()
    (zone,) = status["zones"]
    rows = [k for s in zone["signers"] for k in s["dnskeys"]]
    assert {(k["key_tag"], k["fingerprint"]) for k in rows if k["in_cds"]} == {
        (k.key_tag, k.fingerprint) for k in ksks}
    text = ok(cli(config, "status", ZONE)).out
    for key in everything:
        assert f"{key.key_tag}~{key.fingerprint}" in text, text

    # ZSK rollover at p1: its old ZSK (p0's ZSK's tag) is withdrawn, p0's ZSK stays.
    with Observed(lab, ZONE) as obs:
        res = ok(cli(config, "rollover", ZONE, "--key", "zsk", "--signer", "p1", "--wait"))
        verify_ok(config, ZONE)
    obs.assert_clean()
    assert "zsk-rollover done" in res.out, res.out
    now_p1 = {Key.parse(k.dnskey) for k in lab.keys("p1", ZONE)}
    assert ksk1.key in now_p1 and zsk1.key not in now_p1 and len(now_p1) == 2
    (new_zsk,) = now_p1 - {ksk1.key}
    after = frozenset({p0[257], p0[256], ksk1.key, new_zsk})
    assert served_keys(lab) == [after, after]
    validates(lab)
