"""``sync`` from scratch with two and three real PowerDNS providers, its idempotence, its
dry run, and ``status``/``verify`` on the result; checked at every nameserver, at the
parent, through a validating Unbound and with DNSViz."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from itkit import (
    NEEDS_SERVERS,
    SETTLED,
    Run,
    api_snapshot,
    assert_synced,
    assert_validates,
    history,
    is_ksk,
    ms_subprocess,
    own_keys,
    running_lab,
    served,
    sync_ok,
    sync_states,
    wait_settled,
)
from prereq import require
from watchkit import Watching

from multisigner_lab import Lab, dnsviz

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]

FULL3 = "full3.test."
IDEM = "idem.test."
DRY = "dry.test."
STATUS = "status.test."
SETTLE = "settle.test."
FULL2 = "full2.test."


@pytest.fixture(scope="module")
def lab3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "sync3", providers=3,
                     zones=[FULL3, IDEM, DRY, STATUS, SETTLE]) as lab:
        yield lab


@pytest.fixture(scope="module")
def lab2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "sync2", providers=2, zones=[FULL2]) as lab:
        yield lab


@pytest.mark.parametrize(("which", "zone"), [("lab2", FULL2), ("lab3", FULL3)])
def test_sync_from_scratch(ms: Run, request: pytest.FixtureRequest, which: str,
                           zone: str) -> None:
    lab: Lab = request.getfixturevalue(which)
    cfg = lab.config_path
    n = len(lab.providers)
    keys = own_keys(lab, zone)
    assert all(len(ks) == 2 for ks in keys.values())
    # the starting point is not multi-signer: each provider serves only its own keys
    for provider, s in served(lab, zone):
        assert s.keys == {k.dnskey for k in keys[provider]}, s.where
        assert s.cds is None

    # The starting state breaks the invariant on purpose (p1.. serve DNSKEY RRsets that
    # chain to no DS), so during the sync the watcher watches p0, the one provider whose
    # answers are valid from the start: whatever a resolver holds of p0's, and whichever
    # DS RRset, must keep validating while the sync changes p0 and the parent. Once the
    # sync has settled, every provider is watched.
    with Watching(lab, zone, ["p0"]) as valid_at_start:
        res = sync_ok(ms, cfg, zone)
        wait_settled(res, lab)
    valid_at_start.assert_clean()
    # the plan is printed first, naming what is imported where
    assert f"{zone}: plan ({2 * n} changes)" in res.out, res.out
    for p in keys:
        assert f"  1. {p}: foreign DNSKEYs: add " in res.out
        assert f"  2. {p}: CDS/CDNSKEY: add " in res.out

    assert_synced(lab, zone)
    dnskeys = {s.keys for _, s in served(lab, zone)}
    assert len(dnskeys) == 1 and len(next(iter(dnskeys))) == 2 * n  # every KSK+ZSK, once
    rows = history(ms, cfg, zone)
    assert [r["to_state"] for r in rows] == sync_states()

    with Watching(lab, zone) as everyone:
        res = ms(cfg, "verify", zone)
    everyone.assert_clean()
    assert res.rc == 0, res
    assert f"{zone}: OK — {n} nameservers checked" in res.out
    assert "BREACH" not in res.out
    res = ms(cfg, "verify", zone, "--json")
    assert res.rc == 0, res
    report = res.json()
    assert [z["name"] for z in report["zones"]] == [zone]
    item = report["zones"][0]
    assert item["ok"] is True and item["breaches"] == [] and item["servers"] == n
    assert item["warnings"] == []

    assert_validates(lab, zone)
    require(dnsviz.missing(), "pip package dnsviz, Debian package bind9")
    assert dnsviz.grok(lab, zone) == {}


def test_verify_as_subprocess(lab2: Lab, ms: Run) -> None:
    """The installed console script, as a real process: exit codes and JSON on stdout."""
    before = ms_subprocess(lab2.config_path, "verify", FULL2, "--json")
    if history(ms, lab2.config_path, FULL2):  # synced by the test above
        assert before.rc == 0, before
        assert before.json()["zones"][0]["ok"] is True
    else:  # run alone: nothing synced yet, so p1's signatures do not validate under p0's
        assert before.rc == 1, before
        codes = {b["code"] for b in before.json()["zones"][0]["breaches"]}
        assert "ZSK_MISSING" in codes, before.out
    bad = ms_subprocess(lab2.config_path, "verify", "nosuch.test.")
    assert bad.rc == 2, bad
    assert "zone nosuch.test. is not in the config" in bad.err
    assert bad.out == ""


def test_second_sync_changes_nothing(lab3: Lab, ms: Run) -> None:
    cfg = lab3.config_path
    sync_ok(ms, cfg, IDEM)
    rows = history(ms, cfg, IDEM)
    before = api_snapshot(lab3, IDEM)
    with Watching(lab3, IDEM) as watching:  # synced: every provider valid from here on
        res = ms(cfg, "sync", IDEM)
    watching.assert_clean()
    assert res.rc == 0, res
    assert res.out.strip() == f"{IDEM}: in sync; nothing to change"
    assert history(ms, cfg, IDEM) == rows
    assert api_snapshot(lab3, IDEM) == before
    # history in plain text: one line per transition, oldest first
    lines = ms(cfg, "history", IDEM).out.splitlines()
    assert len(lines) == len(rows) == len(sync_states())
    assert "- -> import-keys:act" in lines[0] and "sync requested" in lines[0]
    assert "parent:observe -> done" in lines[-1]
    # and --dry-run on a synced zone says the same
    res = ms(cfg, "sync", IDEM, "--dry-run")
    assert res.rc == 0, res
    assert res.out.strip() == f"{IDEM}: in sync; nothing to change"
    assert history(ms, cfg, IDEM) == rows


def test_dry_run_changes_nothing(lab3: Lab, ms: Run) -> None:
    cfg = lab3.config_path
    before = api_snapshot(lab3, DRY)
    served_before = served(lab3, DRY)
    ds_before = lab3.parent_ds(DRY)
    keys = own_keys(lab3, DRY)
    res = ms(cfg, "sync", DRY, "--dry-run")
    assert res.rc == 0, res
    assert f"{DRY}: plan (6 changes)" in res.out
    for p, ks in keys.items():
        others = [k for o, oks in keys.items() if o != p for k in oks]
        line = next(x for x in res.out.splitlines() if x.startswith(f"  1. {p}: foreign DNSKEYs"))
        for k in others:
            assert str(k.key_tag) in line, (line, k)
        cds_line = next(x for x in res.out.splitlines() if x.startswith(f"  2. {p}: CDS/CDNSKEY"))
        for k in ks:
            assert (f"DS {k.key_tag}" in cds_line) == is_ksk(k)
    # the lab's parent DS already names every provider's KSK (= the CDS to publish): the
    # plan waits for the nameservers only, not for the parent
    assert "then wait until every nameserver of every provider serves the result" in res.out
    assert "then wait for the parent's DS RRset" not in res.out
    assert res.out.rstrip().endswith(f"{DRY}: dry run; nothing was changed")
    assert api_snapshot(lab3, DRY) == before
    assert served(lab3, DRY) == served_before
    assert lab3.parent_ds(DRY) == ds_before
    assert history(ms, cfg, DRY) == []


def test_status(lab3: Lab, ms: Run) -> None:
    cfg = lab3.config_path
    res = sync_ok(ms, cfg, STATUS)
    keys = own_keys(lab3, STATUS)
    owner = {k.key_tag: p for p, ks in keys.items() for k in ks}
    role = {k.key_tag: k.keytype for ks in keys.values() for k in ks}
    wait_settled(res, lab3)

    res = ms(cfg, "status", STATUS, "--json")
    assert res.rc == 0, res
    data = res.json()
    assert list(data) == ["zones"] and len(data["zones"]) == 1
    zone = data["zones"][0]
    assert zone["name"] == STATUS
    assert zone["model"] == 2
    assert zone["consistent"] is True
    assert zone["process"] is None  # the sync finished
    assert [s["name"] for s in zone["signers"]] == ["p0", "p1", "p2"]
    want_cds = sorted(lab3.parent_ds(STATUS))
    for signer in zone["signers"]:
        assert set(signer) >= {"name", "dnskeys", "cds"}
        tags = []
        for key in signer["dnskeys"]:
            assert set(key) >= {"key_tag", "flags", "algorithm", "role", "origin"}
            tag = key["key_tag"]
            tags.append(tag)
            assert key["origin"] == owner[tag], (signer["name"], key)
            assert key["role"] == role[tag], (signer["name"], key)
            assert key["flags"] == (257 if role[tag] == "ksk" else 256)
            assert key["algorithm"] == 13
        assert sorted(tags) == sorted(owner), signer["name"]
        assert sorted(c.lower() for c in signer["cds"]) == want_cds
    assert sorted(d.lower() for d in zone["parent"]["ds"]) == want_cds

    res = ms(cfg, "status", STATUS)
    assert res.rc == 0, res
    assert f"{STATUS}  model 2  consistent" in res.out
    for p in ("p0", "p1", "p2"):
        assert p in res.out
    for tag in owner:
        assert str(tag) in res.out
    ds_line = next(x for x in res.out.splitlines() if x.strip().startswith("parent DS:"))
    assert sorted(ds_line.split(":", 1)[1].replace(",", " ").split()) == sorted(
        d.split()[0] for d in want_cds)
    assert "NOT consistent" not in res.out



def test_settle_time_printed_is_not_early(lab3: Lab, ms: Run) -> None:
    cfg = lab3.config_path
    res = sync_ok(ms, cfg, SETTLE)
    match = SETTLED.search(res.out)
    assert match, res.out
    printed = datetime.fromisoformat(match.group(1))
    # the engine records it with every observation that ends a step's wait
    last = [r for r in history(ms, cfg, SETTLE) if "old_rrsets_cached_until" in r["evidence"]]
    actual = datetime.fromisoformat(last[-1]["evidence"]["old_rrsets_cached_until"])
    time.sleep(max((printed - datetime.now(UTC)).total_seconds(), 0) + 0.05)
    res = ms(cfg, "verify", SETTLE)  # "verify reports them until then" -- not after
    assert res.rc == 0, res
    assert printed >= actual, (printed, actual)
