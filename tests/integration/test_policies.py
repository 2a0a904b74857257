"""Variants of a correct setup: ``import_ksks = false`` (ZSK-only import), a CSK provider,
and ``check`` on a good and on a misconfigured lab."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from itkit import (
    NEEDS_SERVERS,
    Run,
    api_snapshot,
    assert_synced,
    assert_validates,
    history,
    is_ksk,
    ms_subprocess,
    own_keys,
    provider_entry,
    resolve,
    running_lab,
    served,
    sync_ok,
    wait_settled,
    write_config,
    zone_entry,
)
from prereq import require
from watchkit import Watching

from multisigner_lab import Lab, dnsviz

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]

# Every sync here starts from the lab's "single-signed at p0, the others not yet
# synchronised": only p0's answers are valid from the start (p1, p2 serve keys no DS
# names), so the invariant watcher watches p0 through the sync until it has settled:
# whatever DS RRset and whatever of p0's a resolver holds must keep validating.

NOKSK = "noksk.test."
CHECK = "check.test."
CSK = "csk.test."
NSEC3 = "nsec3.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "policies", providers=3, zones=[NOKSK, CHECK, NSEC3]) as lab:
        yield lab


@pytest.fixture(scope="module")
def csk_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "csk", providers=3, zones=[CSK], csk={"p1"}) as lab:
        yield lab


def test_import_ksks_false_imports_only_zsks(lab: Lab, ms: Run, tmp_path: Path) -> None:
    def zsk_only(data: dict[str, Any]) -> None:
        zone_entry(data, NOKSK)["policy"]["import_ksks"] = False

    cfg = write_config(lab, tmp_path / "noksk.toml", zsk_only)
    keys = own_keys(lab, NOKSK)
    with Watching(lab, NOKSK, ["p0"]) as watching:
        res = sync_ok(ms, cfg, NOKSK)
        wait_settled(res, lab)
    watching.assert_clean()
    for p in keys:  # the plan names only the other providers' ZSKs
        line = next(x for x in res.out.splitlines() if x.startswith(f"  1. {p}: foreign"))
        assert "KSK" not in line and line.count("ZSK") == 2, line
    assert_synced(lab, NOKSK, import_ksks=False)
    for provider, s in served(lab, NOKSK):
        foreign_ksks = {k.dnskey for p, ks in keys.items() if p != provider for k in ks
                        if is_ksk(k)}
        assert not s.keys & foreign_ksks, f"{s.where} serves foreign KSKs"
        assert len(s.keys) == 4  # own KSK + own ZSK + two foreign ZSKs
    assert len({s.keys for _, s in served(lab, NOKSK)}) == 3  # different by design

    res = ms(cfg, "verify", NOKSK, "--json")
    assert res.rc == 0, res
    item = res.json()["zones"][0]
    assert item["ok"] is True and item["breaches"] == []
    assert "DNSKEY_SETS_DIFFER" not in {f["code"] for f in item["warnings"]}
    assert_validates(lab, NOKSK)
    # with the lab config (import_ksks = true) the same zone is *not* in sync: the
    # controller wants the KSKs imported too, and says so without changing anything
    before = api_snapshot(lab, NOKSK)
    res = ms(lab.config_path, "sync", NOKSK, "--dry-run")
    assert res.rc == 0, res
    assert f"{NOKSK}: plan (3 changes)" in res.out and "KSK" in res.out
    assert api_snapshot(lab, NOKSK) == before


def test_check_good_lab(lab: Lab, ms: Run) -> None:
    res = ms(lab.config_path, "check")
    assert res.rc == 0, res
    assert res.out.splitlines() == [
        f"config {lab.config_path}: OK (3 providers, 3 zones)",
        "provider p0: OK",
        "provider p1: OK",
        "provider p2: OK",
    ]


def test_check_names_provider_with_wrong_api_key(lab: Lab, ms: Run, tmp_path: Path) -> None:
    def bad_key(data: dict[str, Any]) -> None:
        provider_entry(data, "p1")["api_key"] = "not-the-key"

    cfg = write_config(lab, tmp_path / "badkey.toml", bad_key)
    before = api_snapshot(lab, CHECK)
    res = ms(cfg, "check")
    assert res.rc == 1, res
    lines = res.out.splitlines()
    assert "provider p0: OK" in lines and "provider p2: OK" in lines
    assert "provider p1: 1 problem(s)" in lines
    problem = lines[lines.index("provider p1: 1 problem(s)") + 1]
    assert "'p1'" in problem and "API key rejected (HTTP 401)" in problem, problem
    assert "not-the-key" not in res.text  # the secret is never echoed
    assert api_snapshot(lab, CHECK) == before
    # the same as a real process
    proc = ms_subprocess(cfg, "check")
    assert proc.rc == 1, proc
    assert "provider p1: 1 problem(s)" in proc.out


def test_check_names_unreachable_nameserver(lab: Lab, ms: Run, tmp_path: Path) -> None:
    def dead_ns(data: dict[str, Any]) -> None:
        provider_entry(data, "p2")["nameservers"] = ["127.0.0.1:9"]

    # one zone: check asks a dead nameserver zone after zone (2 tries x 2 s each)
    res = ms(write_config(lab, tmp_path / "deadns.toml", dead_ns, zones=[CHECK]), "check")
    assert res.rc == 1, res
    assert "provider p2: 1 problem(s)" in res.out, res.out
    assert f"127.0.0.1:9: no answer to {CHECK} SOA" in res.out
    assert "provider p0: OK" in res.out and "provider p1: OK" in res.out


def test_api_key_from_environment(lab: Lab, ms: Run, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = lab.server("p1").api_key

    def from_env(data: dict[str, Any]) -> None:
        provider_entry(data, "p1")["api_key"] = "${MS_IT_P1_KEY}"

    cfg = write_config(lab, tmp_path / "env.toml", from_env, zones=[CHECK])
    assert real not in cfg.read_text()
    monkeypatch.setenv("MS_IT_P1_KEY", real)
    res = ms(cfg, "check")
    assert res.rc == 0 and "provider p1: OK" in res.out, res
    monkeypatch.setenv("MS_IT_P1_KEY", "wrong")
    res = ms(cfg, "check")
    assert res.rc == 1 and "API key rejected" in res.out, res


def test_nsec_and_nsec3_signers_mixed(lab: Lab, ms: Run) -> None:
    """RFC 8901 sec. 5: allowed, and reported as a warning, not a breach."""
    with lab.pdns_api("p1") as api:
        assert api.put(f"/zones/{NSEC3}", json={"nsec3param": "1 0 0 -"}).status_code == 204
        assert api.put(f"/zones/{NSEC3}/rectify").status_code == 200
    with Watching(lab, NSEC3, ["p0"]) as watching:
        res = sync_ok(ms, lab.config_path, NSEC3)
        wait_settled(res, lab)
    watching.assert_clean()
    assert_synced(lab, NSEC3)
    res = ms(lab.config_path, "verify", NSEC3, "--json")
    assert res.rc == 0, res
    item = res.json()["zones"][0]
    assert [w["code"] for w in item["warnings"]] == ["DENIAL_MIXED"]
    assert_validates(lab, NSEC3)
    for _ in range(3):  # denial of existence validates too, whichever provider answers
        resp = resolve(lab, f"nx.{NSEC3}")
        assert resp.rcode() == 3 and resp.flags & 0x20, resp  # NXDOMAIN with AD


def test_csk_provider_syncs_and_validates(csk_lab: Lab, ms: Run) -> None:
    cfg = csk_lab.config_path
    keys = own_keys(csk_lab, CSK)
    assert [(k.keytype, k.flags) for k in keys["p1"]] == [("csk", 257)]
    with Watching(csk_lab, CSK, ["p0"]) as watching:
        res = sync_ok(ms, cfg, CSK)
        wait_settled(res, csk_lab)
    watching.assert_clean()
    assert_synced(csk_lab, CSK)
    (csk,) = keys["p1"]
    for _, s in served(csk_lab, CSK):
        assert csk.dnskey in s.keys and len(s.keys) == 5  # 2 KSK + 2 ZSK + the CSK
        assert any(t.startswith(f"{csk.key_tag} 13 2 ") for t in s.cds_texts)
    assert len(csk_lab.parent_ds(CSK)) == 3
    res = ms(cfg, "verify", CSK)
    assert res.rc == 0, res
    res = ms(cfg, "status", CSK, "--json")
    p1_keys = [k for s in res.json()["zones"][0]["signers"] for k in s["dnskeys"]
               if k["key_tag"] == csk.key_tag]
    assert {(k["role"], k["origin"]) for k in p1_keys} == {("csk", "p1")}
    assert_validates(csk_lab, CSK)
    assert [r["to_state"] for r in history(ms, cfg, CSK)][-1] == "done"
    require(dnsviz.missing(), "pip package dnsviz, Debian package bind9")
    assert dnsviz.grok(csk_lab, CSK) == {}


def test_tenacity_deprecation_is_not_an_error(lab: Lab, ms: Run) -> None:
    """The provider's retry policy uses no deprecated tenacity API (under the project's
    ``filterwarnings = error`` every API call would otherwise fail)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="The 'initial' parameter is deprecated",
                                category=DeprecationWarning)
        res = ms(lab.config_path, "check")
    assert res.rc == 0, res
