"""A Model 1 lab with a partial delegation (``Model1Lab.start(..., delegated=[...])``): three
Knots, the zone delegated to and signed by two of them; the third has the zone configured
(offline-KSK, its own ZSK) and is ready to join, answering SERVFAIL until it gets an SKR.
``multisigner sync`` (the real console script) brings up the two signers only."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.name
import dns.rcode
import pytest
from prereq import needs

from core.config import KnotProviderConfig, load_config
from core.keys import Key
from multisigner_lab import LabError
from multisigner_lab.dnsq import answer, query
from multisigner_lab.model1 import KnotServer, Model1Lab
from multisigner_lab.zones import ds_text
from providers.knot.adapter import KnotProvider

ZONE = "example.test."
ORIGIN = dns.name.from_text(ZONE)
NS0, NS1, NS2 = "ns1.k0.test.", "ns1.k1.test.", "ns1.k2.test."
MULTISIGNER = Path(sys.executable).with_name("multisigner")
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.lab,
    needs("pdns_server", "knotd", "keymgr", "knotc", what="Debian packages pdns-server, knot"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with Model1Lab.start(
        tmp_path_factory.mktemp("m1dlab"),
        providers=3,
        store="file",  # the controller runs as a process anyway; no token needed
        unbound=False,
        delegated=["k1", "k0"],  # any order: kept in provider order
    ) as running:
        yield running


def rcode(k: KnotServer, rdtype: str) -> dns.rcode.Rcode:
    return query(k.address, k.dns_port, ZONE, rdtype).rcode()


def apex_ns_in_zone_file(k: KnotServer) -> list[str]:
    text = (k.dir / "zones" / f"{ZONE}zone").read_text()
    # "name TTL IN NS target" as the lab writes it ("name TTL NS target" once Knot dumps it)
    return sorted(ln.split()[-1] for ln in text.splitlines() if "NS" in ln.split()[2:4])


def knot_provider(lab: Model1Lab, name: str) -> KnotProvider:
    config = load_config(lab.config_path).provider(name)
    assert isinstance(config, KnotProviderConfig)
    return KnotProvider(config)


def own_zsk(lab: Model1Lab, name: str) -> Key:
    async def read() -> Key:
        p = knot_provider(lab, name)
        try:
            state = await p.read_zone(ZONE)
        finally:
            await p.aclose()
        (key,) = [k.key for k in state.own_keys if k.active]
        return key

    return asyncio.run(read())


def test_partial_delegation_then_sync(lab: Model1Lab) -> None:
    # ---- the delegation, the Knots' zones and the config name k0 and k1 only
    assert lab.ns_names == {"k0": NS0, "k1": NS1, "k2": NS2}
    assert lab.parent_ns(ZONE) == [NS0, NS1]
    assert lab.delegated(ZONE) == ["k0", "k1"] == lab.initially_delegated
    assert all(apex_ns_in_zone_file(k) == [NS0, NS1] for k in lab.providers)
    owner_dnskey = lab.owner_ksk(ZONE)[1]
    assert lab.parent_ds(ZONE) == [ds_text(ZONE, owner_dnskey)]
    parent = lab.parent
    # k2's nameserver has its A record in test. all the same (joining needs no new glue)
    a = answer(query(parent.address, parent.dns_port, NS2, "A"), NS2, "A")
    assert a is not None and [r.address for r in a] == [lab.provider("k2").address]
    cfg = tomllib.loads(lab.config_path.read_text())
    assert [p["name"] for p in cfg["providers"]] == ["k0", "k1", "k2"]
    assert all(p["type"] == "knot" for p in cfg["providers"])
    assert [z["signers"] for z in cfg["zones"]] == [["k0", "k1"]]
    assert load_config(lab.config_path).zone(ZONE).signers == ["k0", "k1"]
    assert json.loads(lab.state_path.read_text())["delegated"] == ["k0", "k1"]
    assert Model1Lab.load(lab.directory).initially_delegated == ["k0", "k1"]

    # ---- before any SKR every Knot answers SERVFAIL, k2's keys are there all the same
    for k in lab.providers:
        assert rcode(k, "SOA") == dns.rcode.SERVFAIL, k.name
    zsks = {name: own_zsk(lab, name) for name in ("k0", "k1", "k2")}
    assert len({z.key_tag for z in zsks.values()}) == 3

    # ---- multisigner sync (the console script, as a process): the signers only
    done = subprocess.run(
        [str(MULTISIGNER), "--config", str(lab.config_path), "sync", ZONE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    owner = Key.parse(owner_dnskey)
    combined = {owner, zsks["k0"], zsks["k1"]}
    for name in ("k0", "k1"):
        k = lab.provider(name)
        resp = query(k.address, k.dns_port, ZONE, "DNSKEY")
        assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.AA, name
        keys, sigs = answer(resp, ZONE, "DNSKEY"), answer(resp, ZONE, "RRSIG", covers="DNSKEY")
        assert keys is not None and sigs is not None, name
        assert {Key.from_rdata(rd) for rd in keys} == combined, name  # no k2 ZSK
        assert {s.key_tag for s in sigs} == {owner.key_tag}, name
        dns.dnssec.validate(keys, sigs, {ORIGIN: keys})
        for rdtype in ("SOA", "NS"):
            resp = query(k.address, k.dns_port, ZONE, rdtype)
            data = answer(resp, ZONE, rdtype)
            data_sigs = answer(resp, ZONE, "RRSIG", covers=rdtype)
            assert data is not None and data_sigs is not None, (name, rdtype)
            assert {s.key_tag for s in data_sigs} == {zsks[name].key_tag}, (name, rdtype)
            dns.dnssec.validate(data, data_sigs, {ORIGIN: keys})
        ns = answer(query(k.address, k.dns_port, ZONE, "NS"), ZONE, "NS")
        assert ns is not None and sorted(rd.target.to_text() for rd in ns) == [NS0, NS1]

    # ---- k2 was not given the SKR: still SERVFAIL; its API view has no NS yet
    k2 = lab.provider("k2")
    for rdtype in ("SOA", "DNSKEY", "NS"):
        resp = query(k2.address, k2.dns_port, ZONE, rdtype)
        assert resp.rcode() == dns.rcode.SERVFAIL, rdtype
        assert not resp.answer

    async def apex() -> tuple[frozenset[str], frozenset[str]]:
        p0, p2 = knot_provider(lab, "k0"), knot_provider(lab, "k2")
        try:
            s0, s2 = await asyncio.gather(p0.read_zone(ZONE), p2.read_zone(ZONE))
        finally:
            await asyncio.gather(p0.aclose(), p2.aclose())
        assert s0.csync == s2.csync == frozenset()
        return s0.ns, s2.ns

    assert asyncio.run(apex()) == (frozenset({NS0, NS1}), frozenset())

    # ---- the parent agent changes nothing: CDS = the DS already there, no CSYNC anywhere
    time.sleep(1.5)  # a few scan rounds
    assert lab.parent_ns(ZONE) == [NS0, NS1]
    assert lab.parent_ds(ZONE) == [ds_text(ZONE, owner_dnskey)]


@pytest.mark.parametrize(
    ("delegated", "why"),
    [([], "at least one"), (["k0", "k7"], "unknown providers"), ("k0", "a list")],
)
def test_delegated_checked_before_anything_starts(
    tmp_path: Path, delegated: list[str], why: str
) -> None:
    with pytest.raises(LabError, match=why):
        Model1Lab.start(tmp_path / "lab", providers=3, store="file", delegated=delegated)
    assert not (tmp_path / "lab").exists()
