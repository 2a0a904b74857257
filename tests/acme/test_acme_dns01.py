"""ACME DNS-01 across every signer, on the lab's three real PowerDNS providers: publish
and cleanup in a signed zone, a CNAME-delegated challenge zone, concurrent publishes, the
certbot and lego hooks, a provider lost mid-publish, and bad input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from acmekit import (
    CHAL,
    HOST,
    digest,
    everywhere,
    ms_env,
    ms_start,
    set_everywhere,
    txt_served,
)
from integration.itkit import (
    NEEDS_SERVERS,
    Run,
    api_snapshot,
    history,
    restart_provider,
    stop_provider,
    write_config,
)

from multisigner_lab import Lab
from providers.powerdns import PowerDNSProvider

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]


def test_publish_and_cleanup_in_a_signed_zone(lab: Lab, ms: Run) -> None:
    cfg = lab.config_path
    name = f"_acme-challenge.plain.{HOST}"
    apex, wild = digest("apex order"), digest("wildcard order")
    res = ms(cfg, "acme", "publish", f"plain.{HOST}", apex, "--wait", "--json")
    assert res.rc == 0, res
    out = res.json()
    assert out["zone"] == HOST and out["name"] == name and out["chain"] == [name]
    assert sorted(out["providers"]) == ["p0", "p1", "p2"]
    assert out["nameserver_addresses"] == 3 and out["propagation_seconds"] is not None
    assert all(v == {apex} for v in everywhere(lab, HOST, name)), txt_served(lab, HOST, name)
    # a wildcard order for the same name: both values coexist
    res = ms(cfg, "acme", "publish", f"*.plain.{HOST}", wild, "--wait")
    assert res.rc == 0, res
    assert "served by all 3 nameserver addresses after" in res.out
    assert all(v == {apex, wild} for v in everywhere(lab, HOST, name))
    # cleanup removes its own value only
    res = ms(cfg, "acme", "cleanup", f"plain.{HOST}", apex)
    assert res.rc == 0, res
    assert all(v == {wild} for v in everywhere(lab, HOST, name))
    # publishing an existing value again changes nothing
    res = ms(cfg, "acme", "publish", f"plain.{HOST}", wild, "--json")
    assert res.rc == 0 and res.json()["changed"] == [], res
    res = ms(cfg, "acme", "cleanup", f"plain.{HOST}")  # no value: every DNS-01 value
    assert res.rc == 0, res
    assert all(v == set() for v in everywhere(lab, HOST, name))
    rows = [r for r in history(ms, cfg, HOST) if r["kind"] == "acme"]
    assert [r["to_state"] for r in rows][:3] == ["published", "propagated", "published"]
    assert rows[0]["evidence"]["providers"] and rows[0]["evidence"]["values"] == [apex]
    assert rows[-1]["to_state"] == "cleaned" and rows[-1]["evidence"]["values"] == [wild]


def test_cleanup_leaves_other_txt_records_alone(lab: Lab, ms: Run) -> None:
    name = f"_acme-challenge.other.{HOST}"
    set_everywhere(lab, HOST, name, "TXT", ['"not an acme value"'])
    value = digest("other")
    assert ms(lab.config_path, "acme", "publish", f"other.{HOST}", value, "--wait").rc == 0
    assert all(v == {"not an acme value", value} for v in everywhere(lab, HOST, name))
    assert ms(lab.config_path, "acme", "cleanup", f"other.{HOST}").rc == 0
    assert all(v == {"not an acme value"} for v in everywhere(lab, HOST, name))


def test_cname_delegated_challenge_zone(lab: Lab, ms: Run) -> None:
    """``_acme-challenge.www`` is a CNAME into the challenge zone: the TXT is written
    there, at every signer, and the host zone is left alone."""
    cfg = lab.config_path
    alias, target = f"_acme-challenge.www.{HOST}", f"www.{CHAL}"
    set_everywhere(lab, HOST, alias, "CNAME", [target])
    before = api_snapshot(lab, HOST)
    value = digest("delegated")
    res = ms(cfg, "acme", "publish", f"www.{HOST}", value, "--wait", "--json")
    assert res.rc == 0, res
    out = res.json()
    assert out["zone"] == CHAL and out["name"] == target and out["chain"] == [alias, target]
    assert all(v == {value} for v in everywhere(lab, CHAL, target))
    assert api_snapshot(lab, HOST) == before  # nothing written in the host zone
    assert [r["to_state"] for r in history(ms, cfg, CHAL) if r["kind"] == "acme"][-2:] == [
        "published", "propagated"]
    assert ms(cfg, "acme", "cleanup", f"www.{HOST}", value).rc == 0
    assert all(v == set() for v in everywhere(lab, CHAL, target))


def test_two_concurrent_publishes_both_survive(lab: Lab) -> None:
    cfg = lab.config_path
    name = f"_acme-challenge.both.{HOST}"
    values = [digest("first"), digest("second")]
    procs = [ms_start(cfg, "acme", "publish", f"both.{HOST}", v, "--wait") for v in values]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert all(v == set(values) for v in everywhere(lab, HOST, name)), txt_served(
        lab, HOST, name)


def test_certbot_hooks_with_certbots_environment(lab: Lab) -> None:
    cfg = lab.config_path
    name = f"_acme-challenge.cb.{HOST}"
    value = digest("certbot")
    env = {"CERTBOT_DOMAIN": f"cb.{HOST}".rstrip("."), "CERTBOT_VALIDATION": value,
           "CERTBOT_REMAINING_CHALLENGES": "0",
           "CERTBOT_ALL_DOMAINS": f"cb.{HOST},*.cb.{HOST}".replace(".,", ",").rstrip(".")}
    res = ms_env(cfg, env, "acme", "certbot-auth")
    assert res.rc == 0, res
    assert all(v == {value} for v in everywhere(lab, HOST, name))
    res = ms_env(cfg, env, "acme", "certbot-cleanup")
    assert res.rc == 0, res
    assert all(v == set() for v in everywhere(lab, HOST, name))
    res = ms_env(cfg, {"CERTBOT_DOMAIN": ""}, "acme", "certbot-auth")
    assert res.rc == 2 and "CERTBOT_DOMAIN is not set" in res.err, res


def test_lego_exec_provider_arguments(lab: Lab, ms: Run) -> None:
    """lego calls ``EXEC_PATH present|cleanup FQDN VALUE`` with the full challenge name."""
    name = f"_acme-challenge.lego.{HOST}"
    value = digest("lego")
    assert ms(lab.config_path, "acme", "lego", "present", name, value).rc == 0
    assert all(v == {value} for v in everywhere(lab, HOST, name))
    assert ms(lab.config_path, "acme", "lego", "cleanup", name, value).rc == 0
    assert all(v == set() for v in everywhere(lab, HOST, name))


def test_provider_lost_mid_publish(lab: Lab, ms: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """p2's PowerDNS is stopped just before its write: exit 1 naming p2, and the value is
    removed again from p0 and p1."""
    cfg = lab.config_path
    name = f"_acme-challenge.lost.{HOST}"
    original = PowerDNSProvider.set_rrset
    stopped: list[str] = []

    async def dies(self: PowerDNSProvider, zone: str, owner: str, rdtype: str,
                   records: Sequence[str], ttl: int) -> None:
        if self.name == "p2" and not stopped:
            stop_provider(lab, "p2")
            stopped.append("p2")
        await original(self, zone, owner, rdtype, records, ttl)

    monkeypatch.setattr(PowerDNSProvider, "set_rrset", dies)
    try:
        res = ms(cfg, "acme", "publish", f"lost.{HOST}", digest("lost"), "--wait")
    finally:
        monkeypatch.undo()
        if stopped:
            restart_provider(lab, "p2")
    assert stopped == ["p2"]
    assert res.rc == 1, res
    assert "failed at p2" in res.err and "cannot connect" in res.err, res.err
    assert "removed again where it had been written (p0, p1)" in res.err, res.err
    assert all(v == set() for v in everywhere(lab, HOST, name))
    last = [r for r in history(ms, cfg, HOST) if r["kind"] == "acme"][-1]
    assert last["to_state"] == "publish-failed" and "p2" in last["evidence"]["failed"]


@pytest.mark.parametrize(("args", "rc", "message"), [
    (["publish", f"x.{HOST}", "too-short"], 2, "is not an ACME DNS-01 value"),
    (["publish", f"x.{HOST}", "A" * 42 + "B"], 2, "is not canonical base64url"),
    (["publish", "x..bad", digest("x")], 2, "is not a domain name"),
    (["cleanup", f"x.{HOST}", "no/slashes" + "a" * 33], 2, "is not an ACME DNS-01 value"),
])
def test_bad_input(lab: Lab, ms: Run, args: list[str], rc: int, message: str) -> None:
    before = api_snapshot(lab, HOST)
    res = ms(lab.config_path, "acme", *args)
    assert res.rc == rc, res
    assert message in res.err, res.err
    assert api_snapshot(lab, HOST) == before


def test_bad_chains(lab: Lab, ms: Run, tmp_path: Path) -> None:
    cfg = lab.config_path
    value = digest("chains")
    set_everywhere(lab, HOST, f"_acme-challenge.loop.{HOST}", "CNAME", [f"a.loop.{HOST}"])
    set_everywhere(lab, HOST, f"a.loop.{HOST}", "CNAME", [f"_acme-challenge.loop.{HOST}"])
    set_everywhere(lab, HOST, f"_acme-challenge.out.{HOST}", "CNAME", ["acme.elsewhere.invalid."])
    set_everywhere(lab, HOST, f"_acme-challenge.split.{HOST}", "CNAME", [f"x.{CHAL}"],
                   providers=["p0", "p1"])
    before = (api_snapshot(lab, HOST), api_snapshot(lab, CHAL))
    res = ms(cfg, "acme", "publish", f"loop.{HOST}", value)
    assert res.rc == 1 and "CNAME loop" in res.err, res
    res = ms(cfg, "acme", "publish", f"out.{HOST}", value)
    assert res.rc == 1 and "leaves the configured zones" in res.err, res
    assert "acme.elsewhere.invalid." in res.err
    res = ms(cfg, "acme", "publish", f"split.{HOST}", value)
    assert res.rc == 1 and "the nameservers disagree" in res.err, res
    assert before == (api_snapshot(lab, HOST), api_snapshot(lab, CHAL))


def test_name_outside_the_configured_zones(synced: Lab, ms: Run, tmp_path: Path) -> None:
    """Only the challenge zone is configured: a CNAME from the (unconfigured) host zone
    is followed through a recursive resolver; a name without one is refused, naming the
    zones looked at."""
    lab = synced
    cfg = write_config(lab, tmp_path / "chal-only.toml", zones=[CHAL])
    alias, target = f"_acme-challenge.ext.{HOST}", f"ext.{CHAL}"
    set_everywhere(lab, HOST, alias, "CNAME", [target])
    host, port = lab.resolver
    value = digest("outside")
    res = ms(cfg, "acme", "publish", f"ext.{HOST}", value, "--wait", "--json",
             "--resolver", f"{host}:{port}")
    assert res.rc == 0, res
    assert res.json()["chain"] == [alias, target]
    assert all(v == {value} for v in everywhere(lab, CHAL, target))
    assert ms(cfg, "acme", "cleanup", f"ext.{HOST}", value, "--resolver",
              f"{host}:{port}").rc == 0
    res = ms(cfg, "acme", "publish", f"nocname.{HOST}", value, "--resolver",
             f"{host}:{port}")
    assert res.rc == 1, res
    assert f"_acme-challenge.nocname.{HOST} is in none of the configured zones ({CHAL})" \
        in res.err, res.err


def test_sync_keeps_working(synced: Lab, ms: Run) -> None:
    """After ACME writes, the zones are still consistent (verify from the nameservers)."""
    for zone in (HOST, CHAL):
        res = ms(synced.config_path, "verify", zone)
        assert res.rc == 0, res
    res = ms(synced.config_path, "sync", HOST)
    assert res.rc == 0 and f"{HOST}: in sync; nothing to change" in res.out, res
