"""Partial delegation and the parent run by the parent agent (strict CDS/CSYNC scans): what
``signer add`` / ``signer remove`` are tested against (a signer joins a zone's delegation
or leaves it), done here by hand through the PowerDNS APIs."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.name
import dns.rdatatype
import pytest
from prereq import needs

from multisigner_lab import Lab, LabError
from multisigner_lab.dnsq import answer, query
from multisigner_lab.zones import ds_text, parse_dnskey

pytestmark = [
    pytest.mark.lab,
    needs("pdns_server", "unbound", what="Debian packages pdns-server, unbound"),
]

JOIN = "join.test."  # p2 joins, then p1 leaves
CDS = "cds.test."  # CDS with a partial delegation
GUARD = "guard.test."  # CSYNC the parent agent must refuse
NS0, NS1, NS2 = "ns1.p0.test.", "ns1.p1.test.", "ns1.p2.test."
CSYNC_NOW = "0 3 NS"  # serial 0, flags immediate|soaminimum (RFC 7477), type bitmap NS


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.start(
        tmp_path_factory.mktemp("dlab"),
        providers=3,
        zones=[JOIN, CDS, GUARD],
        delegated=["p0", "p1"],
    ) as running:
        yield running


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` held; AssertionError after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def said(lab: Lab, kind: str, zone: str, outcome: str, text: str = "") -> Callable[[], bool]:
    """The parent agent recorded a ``kind`` scan of ``zone`` with ``outcome`` and ``text``
    in its reason or evidence."""
    return lambda: any(
        h["evidence"].get("child") == zone and h["to_state"] == outcome
        and text in h["reason"] + json.dumps(h["evidence"])
        for h in lab.parent_history(kind)
    )


def change(zone: str, rtype: str, contents: list[str], ttl: int) -> dict[str, object]:
    if not contents:
        return {"name": zone, "type": rtype, "changetype": "DELETE"}
    return {
        "name": zone,
        "type": rtype,
        "ttl": ttl,
        "changetype": "REPLACE",
        "records": [{"content": c, "disabled": False} for c in contents],
    }


def publish(lab: Lab, providers: list[str], zone: str, rtype: str, contents: list[str]) -> None:
    """REPLACE (or, with no contents, DELETE) one apex RRset at each provider."""
    for p in providers:
        with lab.pdns_api(p) as api:
            body = {"rrsets": [change(zone, rtype, contents, lab.ttl)]}
            resp = api.patch(f"/zones/{zone}", json=body)
            assert resp.status_code == 204, resp.text


def ksk_ds(lab: Lab, zone: str, providers: list[str]) -> list[str]:
    return sorted(
        ds_text(zone, k.dnskey) for p in providers for k in lab.keys(p, zone) if k.flags == 257
    )


def apex_ns(lab: Lab, provider: str, zone: str) -> list[str]:
    s = lab.server(provider)
    rrset = answer(query(s.address, s.dns_port, zone, "NS"), zone, "NS")
    assert rrset is not None
    return sorted(rd.target.to_text() for rd in rrset)


def multi_ds(lab: Lab, zone: str, providers: list[str], at: list[str]) -> None:
    """CDS for the KSKs of ``providers`` published at ``at``; wait for the parent DS."""
    want = ksk_ds(lab, zone, providers)
    publish(lab, at, zone, "CDS", want)
    wait_for(lambda: lab.parent_ds(zone) == want, 5, f"parent DS of {zone} == {want}")


def test_partial_delegation(lab: Lab) -> None:
    assert lab.ns_names == {"p0": NS0, "p1": NS1, "p2": NS2}
    for zone in (JOIN, CDS, GUARD):
        assert lab.parent_ns(zone) == [NS0, NS1]
        assert lab.delegated(zone) == ["p0", "p1"]
        # every provider serves the zone, with the delegated providers' NS RRset
        assert all(apex_ns(lab, p, zone) == [NS0, NS1] for p in ("p0", "p1", "p2"))
        # the DS names every delegated provider's KSK: each delegated server validates
        assert lab.parent_ds(zone) == ksk_ds(lab, zone, ["p0", "p1"])
    parent = lab.parent
    referral = query(parent.address, parent.dns_port, JOIN, "NS")
    assert not referral.flags & dns.flags.AA and not referral.answer
    ns_sets = [rr for rr in referral.authority if rr.rdtype == dns.rdatatype.NS]
    assert [rr.ttl for rr in ns_sets] == [lab.ns_ttl]
    # p2's address is in test. all the same (host object; no new glue needed to join)
    a = answer(query(parent.address, parent.dns_port, NS2, "A"), NS2, "A")
    assert a is not None and [r.address for r in a] == [lab.server("p2").address]
    # p2 serves JOIN signed with its own keys, which the parent's DS does not name yet
    p2 = lab.server("p2")
    name = dns.name.from_text(JOIN)
    keys = answer(query(p2.address, p2.dns_port, JOIN, "DNSKEY"), JOIN, "DNSKEY")
    resp = query(p2.address, p2.dns_port, JOIN, "SOA")
    soa, sig = answer(resp, JOIN, "SOA"), answer(resp, JOIN, "RRSIG", covers="SOA")
    assert keys is not None and soa is not None and sig is not None
    assert resp.flags & dns.flags.AA
    dns.dnssec.validate(soa, sig, {name: keys})
    assert {parse_dnskey(k.dnskey) for k in lab.keys("p2", JOIN)} == set(keys)
    assert not set(ksk_ds(lab, JOIN, ["p2"])) & set(lab.parent_ds(JOIN))
    # the controller's config: all three providers, the zone signed by p0 and p1
    cfg = tomllib.loads(lab.config_path.read_text())
    assert [p["name"] for p in cfg["providers"]] == ["p0", "p1", "p2"]
    assert all(z["signers"] == ["p0", "p1"] for z in cfg["zones"])
    state = json.loads(lab.state_path.read_text())
    assert state["delegated"] == ["p0", "p1"] and state["ns_ttl"] == lab.ttl
    # Unbound's stub lists every provider (a delegation cannot carry ports)
    conf = (lab.directory / "unbound" / "unbound.conf").read_text()
    assert f"stub-addr: {p2.address}@{p2.dns_port}" in conf


def test_cds_only_from_delegated_servers(lab: Lab) -> None:
    # p2 is not delegated: its (different) CDS neither blocks nor makes a change
    publish(lab, ["p2"], CDS, "CDS", ["0 0 0 00"])
    multi_ds(lab, CDS, ["p0", "p1", "p2"], at=["p0", "p1"])
    # A round between the two PATCHes may see p0 and p1 differ; p2 must never be asked.
    p2 = lab.server("p2")

    def scans() -> list[str]:
        return [json.dumps(h["evidence"]) for h in lab.parent_history("scan-cds")
                if h["evidence"].get("child") == CDS]

    # the agent writes its history entry just after the parent zone changed
    wait_for(lambda: bool(scans()), 5, "the agent's scan of the CDS child in its history")
    seen = scans()
    assert not [e for e in seen if NS2 in e or p2.nameserver in e], seen


def test_csync_join_then_leave(lab: Lab) -> None:
    before = lab.parent_ns(JOIN)
    publish(lab, ["p0", "p1", "p2"], JOIN, "NS", [NS0, NS1, NS2])
    # 1. CSYNC at one delegated server only: nothing happens
    publish(lab, ["p0"], JOIN, "CSYNC", [CSYNC_NOW])
    wait_for(said(lab, "scan-csync", JOIN, "refused", "different CSYNC"), 5,
             "agent saw CSYNC missing at p1")
    assert lab.parent_ns(JOIN) == before
    # 2. everywhere, but p1's DNSKEY RRset has no DS at the parent (the owner registered
    # p0's only): refused
    lab.register_ds(JOIN, ksk_ds(lab, JOIN, ["p0"]))
    publish(lab, ["p1"], JOIN, "CSYNC", [CSYNC_NOW])
    wait_for(said(lab, "scan-csync", JOIN, "refused", "not validated under the DS"), 5,
             "agent refused p1")
    assert lab.parent_ns(JOIN) == before
    # 3. the join's DS step (every KSK at the parent, from the DS naming p0 and p1); then
    # the parent NS follows CSYNC
    publish(lab, ["p0", "p1"], JOIN, "CSYNC", [])
    lab.register_ds(JOIN, ksk_ds(lab, JOIN, ["p0", "p1"]))
    multi_ds(lab, JOIN, ["p0", "p1", "p2"], at=["p0", "p1"])
    publish(lab, ["p0", "p1"], JOIN, "CSYNC", [CSYNC_NOW])
    took = wait_for(lambda: lab.delegated(JOIN) == ["p0", "p1", "p2"], 5, "p2 delegated")
    print(f"parent NS followed CSYNC {took:.2f} s after it was published")
    assert lab.parent_ns(JOIN) == [NS0, NS1, NS2]
    assert said(lab, "scan-csync", JOIN, "accepted", f"NS {NS0}, {NS1}, {NS2}")()
    publish(lab, ["p0", "p1"], JOIN, "CSYNC", [])  # done: CSYNC removed
    # 4. p1 leaves: NS without p1 at the remaining signers, CSYNC at every delegated one;
    # p1 still serves the old NS RRset, so the servers disagree: refused
    publish(lab, ["p0", "p2"], JOIN, "NS", [NS0, NS2])
    publish(lab, ["p0", "p1", "p2"], JOIN, "CSYNC", [CSYNC_NOW])
    wait_for(said(lab, "scan-csync", JOIN, "refused", "different NS"), 5, "agent saw NS differ")
    assert lab.delegated(JOIN) == ["p0", "p1", "p2"]
    # the leaving signer, still delegated, must serve the new NS RRset too
    publish(lab, ["p1"], JOIN, "NS", [NS0, NS2])
    wait_for(lambda: lab.delegated(JOIN) == ["p0", "p2"], 5, "p1 dropped from the parent NS")
    publish(lab, ["p0", "p1", "p2"], JOIN, "CSYNC", [])
    # 5. the leave's DS step: only p0 and p2 are asked for CDS now (p1 keeps the old one)
    multi_ds(lab, JOIN, ["p0", "p2"], at=["p0", "p2"])
    assert lab.parent_ns(JOIN) == [NS0, NS2]


def test_csync_refused(lab: Lab) -> None:
    before = lab.parent_ns(GUARD)
    publish(lab, ["p0", "p1"], GUARD, "NS", [NS0, NS1, NS2])
    # no immediate flag: RFC 7477 wants an out-of-band approval
    publish(lab, ["p0", "p1"], GUARD, "CSYNC", ["0 2 NS"])
    wait_for(said(lab, "scan-csync", GUARD, "refused", "lacks the immediate flag"), 5,
             "refused: not immediate")
    # soaminimum with a serial above the zone's
    p0 = lab.server("p0")
    soa = answer(query(p0.address, p0.dns_port, GUARD, "SOA"), GUARD, "SOA")
    assert soa is not None
    publish(lab, ["p0", "p1"], GUARD, "CSYNC", [f"{soa[0].serial + 1000} 3 NS"])
    wait_for(said(lab, "scan-csync", GUARD, "refused", "soaminimum not reached"), 5,
             "refused: soaminimum")
    # a type this registry does not process: all or nothing
    publish(lab, ["p0", "p1"], GUARD, "CSYNC", ["0 3 NS TXT"])
    wait_for(said(lab, "scan-csync", GUARD, "refused", "also asks for TXT"), 5,
             "refused: TXT")
    # a nameserver the registry cannot reach (no address in the parent zone nor in DNS)
    publish(lab, ["p0", "p1"], GUARD, "NS", [NS0, NS1, "ns9.p9.test."])
    publish(lab, ["p0", "p1"], GUARD, "CSYNC", [CSYNC_NOW])
    wait_for(said(lab, "scan-csync", GUARD, "refused", "ns9.p9.test."), 10,
             "refused: unknown NS")
    assert lab.parent_ns(GUARD) == before


@pytest.mark.parametrize(
    ("delegated", "why"),
    [(["p1", "p2"], "must include p0"), (["p0", "p7"], "unknown providers"), ("p0", "a list")],
)
def test_delegated_checked_before_anything_starts(
    tmp_path: Path, delegated: list[str], why: str
) -> None:
    with pytest.raises(LabError, match=why):
        Lab.start(tmp_path / "lab", providers=3, delegated=delegated)
    assert not (tmp_path / "lab" / "lab.json").exists()
