"""The lab itself: real PowerDNS servers, the parent run by the parent agent, Unbound."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rrset
import pytest
from prereq import needs, needs_because

from multisigner_lab import Lab, LabError, Server, dnsviz
from multisigner_lab.cli import format_info, lab_down, lab_info, lab_up
from multisigner_lab.dnsq import answer, query
from multisigner_lab.proc import start_time_of
from multisigner_lab.zones import ds_text, parse_dnskey

pytestmark = [
    pytest.mark.lab,
    needs("pdns_server", "unbound", what="Debian packages pdns-server, unbound"),
]

ZONE = "example.test."
SCAN_ZONE = "scan.test."  # the parent agent test changes its DS
SYNC_ZONE = "sync.test."  # synchronised by hand for the DNSViz test
GUARD_ZONE = "guard.test."  # CDS the parent agent must refuse
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.start(
        tmp_path_factory.mktemp("lab"), providers=2, zones=[ZONE, SCAN_ZONE, SYNC_ZONE, GUARD_ZONE]
    ) as running:
        yield running


def ask(server: Server, qname: str, rdtype: str) -> dns.message.Message:
    return query(server.address, server.dns_port, qname, rdtype)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def ksks(lab: Lab, provider: str, zone: str) -> list[str]:
    return [k.dnskey for k in lab.keys(provider, zone) if k.flags == 257]


def running(pid: int) -> bool:
    """A non-zombie process with this pid exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_providers_serve_signed_soa_and_dnskey(lab: Lab) -> None:
    name = dns.name.from_text(ZONE)
    for p in lab.providers:
        for rdtype in ("SOA", "DNSKEY"):
            resp = ask(p, ZONE, rdtype)
            assert resp.flags & dns.flags.AA, (p.name, rdtype)
            rrset = answer(resp, ZONE, rdtype)
            sigs = answer(resp, ZONE, "RRSIG", covers=rdtype)
            assert rrset and sigs, (p.name, rdtype, resp)
            assert rrset.ttl == lab.ttl
        keys = answer(ask(p, ZONE, "DNSKEY"), ZONE, "DNSKEY")
        assert keys is not None and len(keys) == 2  # own KSK + ZSK only, nothing imported
        assert rrset is not None and sigs is not None
        dns.dnssec.validate(rrset, sigs, {name: keys})
    # each provider signs with its own keys, and publishes no CDS of its own
    assert ksks(lab, "p0", ZONE) != ksks(lab, "p1", ZONE)
    for p in lab.providers:
        with lab.pdns_api(p.name) as api:
            kinds = {m["kind"] for m in api.get(f"/zones/{ZONE}/metadata").json()}
        assert not kinds & {"PUBLISH-CDS", "PUBLISH-CDNSKEY"}
        assert answer(ask(p, ZONE, "CDS"), ZONE, "CDS") is None


def test_parent_serves_signed_ds_of_every_delegated_ksk(lab: Lab) -> None:
    parent = lab.parent
    resp = ask(parent, ZONE, "DS")
    ds, sigs = answer(resp, ZONE, "DS"), answer(resp, ZONE, "RRSIG", covers="DS")
    assert ds is not None and sigs is not None
    assert ds.ttl == lab.ds_ttl
    parent_keys = answer(ask(parent, "test.", "DNSKEY"), "test.", "DNSKEY")
    assert parent_keys is not None
    dns.dnssec.validate(ds, sigs, {dns.name.from_text("test."): parent_keys})
    # every delegated provider's KSK: each server's DNSKEY RRset chains to the DS
    assert lab.parent_ds(ZONE) == sorted(ds_text(ZONE, k) for p in ("p0", "p1")
                                         for k in ksks(lab, p, ZONE))
    # the parent's KSK is the resolver's trust anchor
    assert {parse_dnskey(a) for a in lab.trust_anchors} <= set(parent_keys)


def test_resolver_validates_parent_and_resolves_child(lab: Lab) -> None:
    address, port = lab.resolver
    q = dns.message.make_query("test.", "SOA", want_dnssec=True)
    resp = dns.query.udp(q, address, port=port, timeout=3)
    assert resp.rcode() == dns.rcode.NOERROR
    assert resp.flags & dns.flags.AD
    q = dns.message.make_query(f"www.{ZONE}", "A", want_dnssec=True)
    resp = dns.query.udp(q, address, port=port, timeout=3)
    # Not yet multi-signer, but the DS names both KSKs: either server's answer validates
    assert resp.flags & dns.flags.AD
    a = answer(resp, f"www.{ZONE}", "A")
    assert a is not None and [r.to_text() for r in a] == ["192.0.2.10"]


def test_config_and_state_files(lab: Lab) -> None:
    assert lab.config_path.stat().st_mode & 0o777 == 0o600
    assert lab.state_path.stat().st_mode & 0o777 == 0o600
    cfg = tomllib.loads(lab.config_path.read_text())
    assert cfg["state"]["url"] == f"sqlite:///{lab.directory}/multisigner.db"
    assert [p["name"] for p in cfg["providers"]] == ["p0", "p1"]
    p0 = cfg["providers"][0]
    assert p0["nameservers"] == [lab.providers[0].nameserver]
    assert p0["ns_names"] == ["ns1.p0.test."]
    assert p0["api_key"] == lab.providers[0].api_key
    assert [z["name"] for z in cfg["zones"]] == [ZONE, SCAN_ZONE, SYNC_ZONE, GUARD_ZONE]
    zone = cfg["zones"][0]
    assert zone["model"] == 2 and zone["signers"] == ["p0", "p1"]
    assert zone["parent"] == {"type": "cds-scan", "nameservers": [lab.parent.nameserver]}
    state = json.loads(lab.state_path.read_text())
    assert {p["name"] for p in state["processes"]} == {"parent", "p0", "p1", "parent-agent",
                                                              "unbound"}
    with lab.pdns_api("p1") as api:
        assert api.get(f"/zones/{ZONE}/metadata").status_code == 200


def agent_said(lab: Lab, zone: str, outcome: str, text: str = "") -> bool:
    """The parent agent recorded a CDS scan of ``zone`` with ``outcome`` and ``text`` in
    its reason."""
    return any(h["evidence"].get("child") == zone and h["to_state"] == outcome
               and text in h["reason"] for h in lab.parent_history("scan-cds"))


def test_agent_follows_cds(lab: Lab) -> None:
    both = sorted(ds_text(SCAN_ZONE, k) for p in ("p0", "p1") for k in ksks(lab, p, SCAN_ZONE))
    assert lab.parent_ds(SCAN_ZONE) == both
    # a SHA-384 digest of p0's KSK on top: a new DS RRset, every key in it signs somewhere
    more = sorted([*both, *(ds_text(SCAN_ZONE, k, "SHA384") for k in ksks(lab, "p0", SCAN_ZONE))])
    for p in ("p0", "p1"):
        set_cds(lab, p, SCAN_ZONE, more)
    wait_for(lambda: lab.parent_ds(SCAN_ZONE) == more, 5, f"parent DS == {more}")
    assert agent_said(lab, SCAN_ZONE, "accepted")
    # RFC 8078 delete form: the parent drops the DS (zone goes insecure)
    for p in ("p0", "p1"):
        set_cds(lab, p, SCAN_ZONE, ["0 0 0 00"])
    wait_for(lambda: lab.parent_ds(SCAN_ZONE) == [], 5, "parent DS removed")


def set_cds(lab: Lab, provider: str, zone: str, contents: list[str]) -> None:
    with lab.pdns_api(provider) as api:
        body = {"rrsets": [cds_change(zone, contents, lab.ttl)]}
        assert api.patch(f"/zones/{zone}", json=body).status_code == 204


def test_agent_refuses_unsafe_cds(lab: Lab) -> None:
    before = lab.parent_ds(GUARD_ZONE)
    p1_only = sorted(ds_text(GUARD_ZONE, k) for k in ksks(lab, "p1", GUARD_ZONE))
    # 1. published at one provider only: servers disagree
    set_cds(lab, "p0", GUARD_ZONE, p1_only)
    wait_for(lambda: agent_said(lab, GUARD_ZONE, "refused", "serve different CDS"), 5,
             "agent saw CDS differ")
    assert lab.parent_ds(GUARD_ZONE) == before
    # 2. identical everywhere, but no server's KSK matches the parent DS: no chain of trust
    with lab.pdns_api("parent") as api:
        bogus = "12345 13 2 " + "ab" * 32
        body = {"rrsets": [{**cds_change(GUARD_ZONE, [bogus], lab.ds_ttl), "type": "DS"}]}
        assert api.patch("/zones/test.", json=body).status_code == 204
    set_cds(lab, "p1", GUARD_ZONE, p1_only)
    wait_for(lambda: agent_said(lab, GUARD_ZONE, "refused", "not validated under the DS"), 5,
             "agent refused")
    assert lab.parent_ds(GUARD_ZONE) == [bogus]


def cds_change(zone: str, contents: list[str], ttl: int) -> dict[str, object]:
    return {
        "name": zone,
        "type": "CDS",
        "ttl": ttl,
        "changetype": "REPLACE",
        "records": [{"content": c, "disabled": False} for c in contents],
    }


@needs_because(dnsviz.missing(), "pip package dnsviz, Debian package bind9")
def test_dnsviz_clean_after_manual_model2_sync(lab: Lab) -> None:
    """What the controller will do, by hand: every key everywhere, CDS for both KSKs,
    parent DS follows; then DNSViz finds nothing and Unbound validates."""
    own = {p: [k.dnskey for k in lab.keys(p, SYNC_ZONE)] for p in ("p0", "p1")}
    for p, other in (("p0", "p1"), ("p1", "p0")):
        with lab.pdns_api(p) as api:
            body = {
                "rrsets": [
                    {
                        "name": SYNC_ZONE,
                        "type": "DNSKEY",
                        "ttl": lab.ttl,
                        "changetype": "REPLACE",
                        "records": [{"content": k, "disabled": False} for k in own[other]],
                    },
                    cds_change(
                        SYNC_ZONE,
                        [
                            ds_text(SYNC_ZONE, k)
                            for q in ("p0", "p1")
                            for k in ksks(lab, q, SYNC_ZONE)
                        ],
                        lab.ttl,
                    ),
                ]
            }
            assert api.patch(f"/zones/{SYNC_ZONE}", json=body).status_code == 204
    wait_for(lambda: len(lab.parent_ds(SYNC_ZONE)) == 2, 5, "parent DS for both KSKs")
    assert dnsviz.grok(lab, SYNC_ZONE) == {}
    time.sleep(lab.ttl + 0.5)  # Unbound may hold the earlier (bogus) answers that long
    address, port = lab.resolver
    q = dns.message.make_query(f"www.{SYNC_ZONE}", "A", want_dnssec=True)
    for _ in range(4):  # every provider must give a validating answer
        resp = dns.query.udp(q, address, port=port, timeout=3)
        assert resp.flags & dns.flags.AD, resp


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    lab = Lab.start(tmp_path / "lab", providers=2)
    pids = [p.pid for p in lab.procs]
    assert len(pids) == 5 and all(running(pid) for pid in pids)
    lab.stop()
    assert not any(running(pid) for pid in pids)
    assert lab.alive() == []
    assert json.loads(lab.state_path.read_text())["running"] is False
    lab.stop()  # idempotent


def test_load_stops_a_lab_started_by_another_process(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    code = (
        "import sys, pathlib; from multisigner_lab import Lab;"
        " Lab.start(pathlib.Path(sys.argv[1]), providers=1)"
    )
    subprocess.run([sys.executable, "-c", code, str(directory)], cwd=REPO, check=True, timeout=60)
    lab = Lab.load(directory)
    try:
        assert sorted(lab.alive()) == ["p0", "parent", "parent-agent", "unbound"]
        procs = [(p.pid, start_time_of(p.pid)) for p in lab.procs]
        assert all(start is not None for _, start in procs)
    finally:
        Lab.load(directory).stop()
    assert not any(running(pid) for pid, _ in procs)
    assert Lab.load(directory).alive() == []


def test_cli_functions(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    lab = lab_up(directory, providers=1, zones=["a.test.", "b.test."], ttl=3)
    try:
        info = lab_info(directory)
        assert info["running"] and info["config"] == str(lab.config_path)
        assert info["zones"] == ["a.test.", "b.test."]
        assert lab.providers[0].api_key not in json.dumps(info)  # no secrets printed
        assert str(lab.config_path) in format_info(info)
        resp = ask(lab.providers[0], "b.test.", "SOA")
        soa = answer(resp, "b.test.", "SOA")
        assert soa is not None and soa.ttl == 3 and soa[0].minimum == 3
        with pytest.raises(LabError, match="already runs"):
            lab_up(directory, providers=1)
    finally:
        lab_down(directory)
    assert lab_info(directory)["running"] is False
