"""Providers whose SOAs differ, as every hosted provider's do (each signer is its own
primary: its own MNAME, RNAME, serial, refresh/retry/expire), still serve one zone as far
as a resolver can tell: ``verify --content`` passes and a signer joins (the
``content-matches`` checks before and during ``signer add`` hold). A differing
negative-caching TTL, min(SOA TTL, SOA minimum), is a warning only.

Real PowerDNS servers; each provider's SOA is set through its own API here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rollover.rollkit import FAST, LAB, cli, ok, running_lab, sync_zones, write_config

from multisigner_lab import Lab
from multisigner_lab.dnsq import answer, query
from multisigner_lab.powerdns import set_rrset

pytestmark = LAB

ZONE = "soa.test."

# Every field but the negative-caching TTL differs between the three. The minimum stays
# the lab TTL: PowerDNS serves the DNSKEY RRset with the SOA minimum as its TTL.
OWN_SOA = {
    "p0": "ns1.p0.test. hostmaster.soa.test. 1 3600 600 86400 {ttl}",
    "p1": "ns1.p1.test. dns-admin.p1.example. 2026120101 7200 1800 1209600 {ttl}",
    "p2": "ns1.p2.test. noc.p2.example. 5 10800 3600 604800 {ttl}",
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "content-soa", providers=3, zones=[ZONE], ttl=2,
                     delegated=["p0", "p1"]) as running:
        sync_zones(running, [ZONE])
        yield running


def set_soa(lab: Lab, provider: str, content: str, ttl: int) -> None:
    with lab.pdns_api(provider) as api:
        set_rrset(api, ZONE, ZONE, "SOA", ttl=ttl, contents=[content])


def served_soa(lab: Lab, provider: str) -> tuple[int, list[str]]:
    server = lab.server(provider)
    rrset = answer(query(server.address, server.dns_port, ZONE, "SOA"), ZONE, "SOA")
    assert rrset is not None, f"{provider} serves no SOA"
    return int(rrset.ttl), rrset[0].to_text().split()


def test_providers_with_their_own_soa_verify_and_a_signer_joins(lab: Lab) -> None:
    for provider, soa in OWN_SOA.items():
        set_soa(lab, provider, soa.format(ttl=lab.ttl), lab.ttl)
    served = {p: served_soa(lab, p)[1] for p in ("p0", "p1", "p2")}
    # (serials too may differ: PowerDNS' SOA-EDIT-API rewrites each one per change)
    for field in (0, 1, 3, 4, 5):  # mname rname refresh retry expire
        assert len({s[field] for s in served.values()}) == 3, (field, served)
    config = write_config(lab, "soa.toml", zones=[ZONE], policy=FAST)

    res = ok(cli(config, "verify", ZONE, "--content", "--json"))
    report = res.json()
    zone = report["zones"][0]
    assert zone["breaches"] == [] and zone["warnings"] == [], report

    # signer add compares p2's content before it starts, and again before the delegation
    # names p2 (add-ns); both used to refuse over the SOA.
    res = ok(cli(config, "signer", "add", ZONE, "p2", "--wait"))
    assert "signer-add done" in res.out, res.out
    ok(cli(config, "verify", ZONE, "--content"))


def test_a_differing_negative_ttl_is_a_warning(lab: Lab) -> None:
    # p1 serves its SOA with TTL 1: negative answers from p1 are cached for 1 s, from p0
    # for 2 s. The DNSKEY TTL (the SOA minimum) is unchanged.
    set_soa(lab, "p1", OWN_SOA["p1"].format(ttl=lab.ttl), 1)
    assert served_soa(lab, "p1")[0] == 1
    config = write_config(lab, "soa-neg.toml", zones=[ZONE], policy=FAST)
    res = ok(cli(config, "verify", ZONE, "--content", "--json"))
    report = res.json()
    zone = report["zones"][0]
    assert zone["breaches"] == [], report
    codes = [w["code"] for w in zone["warnings"]]
    assert codes == ["NEGATIVE_TTL_DIFFERS"], report
    message = zone["warnings"][0]["message"]
    assert "p1: 1 = min(TTL 1, minimum 2)" in message and "up to 2 s" in message, message
