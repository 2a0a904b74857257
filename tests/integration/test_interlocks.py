"""Safety interlocks (docs/design-notes.md, "Safety interlocks") and configuration errors:
``sync`` refuses with
exit 1 (2 for the config), names the provider and the problem, and changes nothing at any
provider, at the parent, or in the history."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from itkit import (
    NEEDS_SERVERS,
    Run,
    api_snapshot,
    history,
    ms_subprocess,
    provider_entry,
    running_lab,
    served,
    wait_settled,
    write_config,
    zone_entry,
)
from watchkit import Watching

from multisigner_lab import Lab

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]

ALG = "alg.test."
BADKEY = "badkey.test."
DOWN = "down.test."
MISSING = "missing.test."
UNSIGNED = "unvalidatable.test."
CONFIG = "config.test."
ALLOK = "allok.test."
ALLBAD = "allbad.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "interlocks", providers=3,
                     zones=[BADKEY, DOWN, MISSING, UNSIGNED, CONFIG, ALLOK, ALLBAD],
                     unbound=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def alg_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "algorithms", providers=2, zones=[ALG],
                     algorithms={"p1": "ED25519"}, unbound=False) as lab:
        yield lab


def refused(ms: Run, lab: Lab, cfg: Path, zone: str, *needles: str) -> str:
    """Run ``sync ZONE``; it must exit 1 with every needle on stderr and change nothing
    (API state of every provider, what the nameservers serve, parent DS, history)."""
    api_before = api_snapshot(lab, zone)
    served_before = served(lab, zone, require_aa=False)
    ds_before = lab.parent_ds(zone)
    rows_before = history(ms, cfg, zone)
    res = ms(cfg, "sync", zone)
    assert res.rc == 1, res
    for needle in needles:
        assert needle in res.err, f"{needle!r} not in stderr:\n{res.err}"
    assert "nothing was changed" in res.err, res.err
    assert api_snapshot(lab, zone) == api_before
    assert served(lab, zone, require_aa=False) == served_before
    assert lab.parent_ds(zone) == ds_before
    assert history(ms, cfg, zone) == rows_before
    return res.err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_algorithm_mismatch(alg_lab: Lab, ms: Run) -> None:
    err = refused(ms, alg_lab, alg_lab.config_path, ALG, "[ALGORITHM_MISMATCH]",
                  "p0: ECDSAP256SHA256", "p1: ED25519", "RFC 8901 sec. 4")
    assert err.startswith(f"error: {ALG}: refusing to sync"), err


def test_wrong_api_key(lab: Lab, ms: Run, tmp_path: Path) -> None:
    def bad_key(data: dict[str, Any]) -> None:
        provider_entry(data, "p1")["api_key"] = "wrong-key"

    cfg = write_config(lab, tmp_path / "badkey.toml", bad_key)
    err = refused(ms, lab, cfg, BADKEY, "1 provider(s) failed",
                  f"provider 'p1', zone {BADKEY}", "API key rejected (HTTP 401)")
    assert "'p0'" not in err and "'p2'" not in err
    assert "wrong-key" not in err


def test_provider_api_down(lab: Lab, ms: Run, tmp_path: Path) -> None:
    port = closed_port()

    def dead_api(data: dict[str, Any]) -> None:
        provider_entry(data, "p2")["api_url"] = f"http://127.0.0.1:{port}"

    cfg = write_config(lab, tmp_path / "down.toml", dead_api)
    refused(ms, lab, cfg, DOWN, f"provider 'p2', zone {DOWN}", "cannot connect",
            f"http://127.0.0.1:{port}/api/v1/servers/localhost")


def test_zone_missing_at_one_provider(lab: Lab, ms: Run) -> None:
    with lab.pdns_api("p2") as api:
        assert api.delete(f"/zones/{MISSING}").status_code == 204
    refused(ms, lab, lab.config_path, MISSING, f"provider 'p2', zone {MISSING}",
            "does not exist at this provider")
    # verify says why from the nameservers alone, check from the API
    res = ms(lab.config_path, "verify", MISSING, "--json")
    assert res.rc == 1, res
    unobservable = [b for b in res.json()["zones"][0]["breaches"]
                    if b["code"] == "UNOBSERVABLE"]
    assert [b["provider"] for b in unobservable] == ["p2"], res.out
    res = ms(lab.config_path, "check")
    assert res.rc == 1, res
    assert "provider p2: " in res.out and f"zone {MISSING} does not exist" in res.out
    assert "provider p0: OK" in res.out and "provider p1: OK" in res.out


def test_dnskey_rrset_not_validatable(lab: Lab, ms: Run) -> None:
    """PowerDNS signs with an *active* KSK even when it is not *published*: the served
    DNSKEY RRset then carries an RRSIG by a key that is not in it. (Deactivating every KSK
    does not do it: PowerDNS then signs the DNSKEY RRset with the ZSK, which validates.)"""
    (ksk,) = [k for k in lab.keys("p1", UNSIGNED) if k.keytype == "ksk"]
    with lab.pdns_api("p1") as api:
        resp = api.put(f"/zones/{UNSIGNED}/cryptokeys/{ksk.id}",
                       json={"active": True, "published": False})
        assert resp.status_code == 204, resp.text
    p1 = lab.server("p1")
    err = refused(ms, lab, lab.config_path, UNSIGNED, "[DNSKEY_NOT_VALIDATABLE]",
                  f"p1 ({p1.nameserver}): its DNSKEY RRset does not validate under its own "
                  f"keys (RRSIGs by [{ksk.key_tag}]")
    assert "p0 (" not in err and "p2 (" not in err


def test_sync_all_reports_per_zone(lab: Lab, ms: Run, tmp_path: Path) -> None:
    """``--all``: every zone is attempted, a failing zone does not stop the others, the
    exit code is 1 and stderr names the failing zone."""
    cfg = write_config(lab, tmp_path / "all.toml", zones=[ALLOK, ALLBAD])
    with lab.pdns_api("p1") as api:
        assert api.delete(f"/zones/{ALLBAD}").status_code == 204
    bad_before = api_snapshot(lab, ALLBAD)
    # p0 is valid from the lab's start (the others serve keys no DS names yet): the sync
    # that succeeds and the one refused must both leave it valid in every combination
    with Watching(lab, ALLOK, ["p0"]) as ok_zone, Watching(lab, ALLBAD, ["p0"]) as bad_zone:
        res = ms(cfg, "sync", "--all")
        wait_settled(res, lab, required=False)
    ok_zone.assert_clean()
    bad_zone.assert_clean()
    assert res.rc == 1, res
    assert f"{ALLOK}: synced" in res.out
    errors = [x for x in res.err.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {ALLBAD}: "), res.err
    assert "cannot sync" in errors[0]
    assert f"provider 'p1', zone {ALLBAD}" in res.err
    assert api_snapshot(lab, ALLBAD) == bad_before
    assert len(lab.parent_ds(ALLOK)) == 3

    res = ms(cfg, "verify", "--all", "--json")
    assert res.rc == 1, res
    verdicts = {z["name"]: z for z in res.json()["zones"]}
    assert set(verdicts) == {ALLOK, ALLBAD}
    assert verdicts[ALLBAD]["ok"] is False
    assert {b["provider"] for b in verdicts[ALLBAD]["breaches"]
            if b["code"] == "UNOBSERVABLE"} == {"p1"}
    res = ms(cfg, "sync", ALLOK, "--all")
    assert res.rc == 2 and "give a ZONE or --all, not both" in res.err, res


def test_verify_fails_when_the_parent_cannot_be_observed(lab: Lab, ms: Run,
                                                         tmp_path: Path) -> None:
    port = closed_port()

    def dead_parent(data: dict[str, Any]) -> None:
        zone_entry(data, CONFIG)["parent"]["nameservers"] = [f"127.0.0.1:{port}"]

    res = ms(write_config(lab, tmp_path / "noparent.toml", dead_parent, zones=[CONFIG]),
             "verify", CONFIG, "--json")
    assert res.rc == 1, res
    breaches = res.json()["zones"][0]["breaches"]
    parent = [b for b in breaches if b["code"] == "UNOBSERVABLE"
              and b.get("server") == f"127.0.0.1:{port}"]
    assert parent and "the DS side of the invariant cannot be checked" in parent[0]["message"]


@pytest.mark.parametrize(("mutate", "key_path", "detail"), [
    (lambda d: d["zones"][0]["signers"].__setitem__(1, "nosuch"), "zones[0].signers[1]",
     "no provider named 'nosuch'"),
    (lambda d: d["zones"][0]["policy"].__setitem__("safety_margin", "soon"),
     "zones[0].policy.safety_margin", "soon"),
    (lambda d: d["providers"][1].__setitem__("api_key", "${MS_IT_SURELY_UNSET}"),
     "providers[1].api_key", "environment variable MS_IT_SURELY_UNSET is not set"),
    (lambda d: d["providers"][2].__setitem__("apikey", "x"), "providers[2].apikey",
     "unknown key"),
    (lambda d: d["zones"][0].__setitem__("model", 3), "zones[0].model", ""),
], ids=["unknown-signer", "bad-duration", "unset-env", "unknown-key", "bad-model"])
@pytest.mark.parametrize("command", [["sync", CONFIG], ["verify", CONFIG], ["check"],
                                     ["status", "--json"]], ids=lambda c: c[0])
def test_malformed_config(lab: Lab, ms: Run, tmp_path: Path, command: list[str],
                          mutate: Callable[[dict[str, Any]], None], key_path: str,
                          detail: str) -> None:
    db = tmp_path / "never.db"

    def edit(data: dict[str, Any]) -> None:
        data["state"]["url"] = f"sqlite:///{db}"
        mutate(data)

    cfg = write_config(lab, tmp_path / "bad.toml", edit, zones=[CONFIG])
    before = api_snapshot(lab, CONFIG)
    res = ms(cfg, *command)
    assert res.rc == 2, res
    assert res.out == ""
    assert res.err.startswith(f"configuration error: {cfg}: "), res.err
    assert f"{key_path}: " in res.err and detail in res.err, res.err
    assert not db.exists(), "the state DB was created although the config is invalid"
    assert list(tmp_path.iterdir()) == [cfg]
    assert api_snapshot(lab, CONFIG) == before


def test_malformed_config_subprocess(lab: Lab, tmp_path: Path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text(lab.config_path.read_text().replace("[[zones]]", "[[zones]\n", 1))
    res = ms_subprocess(cfg, "sync", CONFIG)
    assert res.rc == 2, res
    assert f"configuration error: {cfg}: not valid TOML" in res.err
    assert res.out == ""
    assert "Traceback" not in res.err
    res = ms_subprocess(tmp_path / "absent.toml", "check")
    assert res.rc == 2 and "no such config file" in res.err, res
