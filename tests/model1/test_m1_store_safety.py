"""Model 1 never signs with a KSK the parent does not know: a zone that is signed and
delegated, and ``[zones.owner_ksk]`` pointed at the wrong place -- a key directory that
does not exist (a typo), one that is empty or holds another zone's key, a PKCS#11 token
(SoftHSM2) with a key label prefix matching nothing or another key, an AWS KMS alias
prefix matching nothing or another key (KMS faked in this process with moto's
``mock_aws``, as tests/unit/test_kskstore_kms.py does; the sync runs in this process too,
so the fake is what it talks to).

Each time ``sync`` refuses with exit 1 naming the tags held, served and in the DS, no SKR
reaches a Knot (every Knot still serves the set signed by the lab's owner KSK), no sync
process is started, and the validating Unbound still answers with AD. ``check`` reports
what each store holds against what is served and in the DS; ``run --once`` (the daemon)
with a wrong store changes nothing; ``ksk init`` makes a first key only for a zone that
is not signed and has no DS, and that key then carries the zone to a validating chain.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from core.keys import Key
from model1.m1kit import (
    cli,
    cli_proc,
    expect_served,
    history,
    model1_lab,
    needs_tools,
    ok,
    resolve_ad,
    servfails,
    sync,
    sync_processes,
    wait_until,
    write_config,
)
from multisigner_lab import powerdns, zones
from multisigner_lab.model1 import Model1Lab
from multisigner_lab.ownerksk import _generate_elsewhere
from providers.kskstore import OwnerKskConfig
from providers.kskstore.kmsstore import KmsKskStore

pytestmark = [pytest.mark.lab, needs_tools("softhsm2-util")]

SIGNED = "signed.test."
FRESH = "fresh.test."
# Signatures that outlast the test (the lab's own 60 s would expire while it runs)
LONG = {"signature_validity": "2h", "signature_refresh": "30m"}
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    """Two Knots, owner KSKs in key files; SIGNED synced (served, DS at the parent, AD at
    Unbound); FRESH never synced (every Knot SERVFAILs) and its DS removed at the parent."""
    with model1_lab(tmp_path_factory, "m1-safety", providers=2, zones=[SIGNED, FRESH],
                    store="file") as lab:
        with lab.parent_pdns_api() as client:
            powerdns.set_rrset(client, zones.PARENT_ZONE, FRESH, "DS", ttl=2, contents=[])
        assert lab.parent_ds(FRESH) == []
        res = ok(sync(config(lab, "signed.toml", SIGNED)))
        assert f"{SIGNED}: synced" in res.out, res.text
        resolve_ad(lab, SIGNED)
        yield lab


def config(lab: Model1Lab, name: str, zone: str,
           owner_ksk: dict[str, Any] | None = None) -> Path:
    """The lab's config for ``zone`` alone (LONG signatures), ``owner_ksk`` replacing its
    ``[zones.owner_ksk]``."""

    def mutate(data: dict[str, Any]) -> None:
        if owner_ksk is not None:
            for z in data["zones"]:
                z["owner_ksk"] = owner_ksk

    return write_config(lab, name, zones=[zone], policy=LONG, mutate=mutate)  # type: ignore[arg-type]


def tag(lab: Model1Lab, zone: str) -> int:
    return Key(lab.owner_ksk(zone)[1]).key_tag


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


def refused_and_unchanged(lab: Model1Lab, res: Any, *needles: str) -> None:
    """``sync`` refused, naming ``needles``; nothing reached a Knot; still validates."""
    print(res.err)
    assert res.rc == 1, res.text
    for needle in needles:
        assert needle in res.err, (needle, res.err)
    assert "synced" not in res.out and "generated owner KSK" not in res.text, res.text
    expect_served(lab, SIGNED)  # signed by the lab's owner KSK alone, as before
    resolve_ad(lab, SIGNED)


def summary(held: str, lab: Model1Lab) -> str:
    t = tag(lab, SIGNED)
    return (f"holds key tag(s) {held}; the zone serves owner KSK tag(s) {t}; the parent's DS "
            f"names key tag(s) {t}")


# --------------------------------------------------------------------------- file


def test_file_store_directory_missing_is_refused_and_not_created(
        lab: Model1Lab, tmp_path: Path) -> None:
    typo = tmp_path / "keyz"
    before = sync_processes(lab.config_path, SIGNED)
    res = sync(config(lab, "typo.toml", SIGNED, {"store": "file", "directory": str(typo)}),
               SIGNED)
    refused_and_unchanged(lab, res, f"the key directory {typo} does not exist", "ksk init")
    assert not typo.exists(), "the store made the directory"
    assert sync_processes(lab.config_path, SIGNED) == before


def test_file_store_empty_or_another_zones_directory_is_refused(
        lab: Model1Lab, tmp_path: Path) -> None:
    empty = private_dir(tmp_path / "empty")
    before = sync_processes(lab.config_path, SIGNED)
    res = sync(config(lab, "empty.toml", SIGNED, {"store": "file", "directory": str(empty)}),
               SIGNED)
    refused_and_unchanged(lab, res, "nothing was changed", summary("none", lab))
    assert list(empty.iterdir()) == [], "a key was made in the empty store"
    other = Path(lab.state["owner_ksk"]["directories"][FRESH])
    files = sorted(other.iterdir())
    res = sync(config(lab, "other.toml", SIGNED, {"store": "file", "directory": str(other)}),
               SIGNED)
    refused_and_unchanged(lab, res, summary(str(tag(lab, FRESH)), lab))
    assert sorted(other.iterdir()) == files
    assert sync_processes(lab.config_path, SIGNED) == before


def test_check_compares_each_store_with_the_zone(lab: Model1Lab, tmp_path: Path) -> None:
    t = tag(lab, SIGNED)
    key_dir = lab.state["owner_ksk"]["directories"][SIGNED]
    res = ok(cli(config(lab, "check-good.toml", SIGNED), "check"))
    label = f"zone {SIGNED} owner KSK store file {key_dir}"
    assert f"{label}: note: {summary(str(t), lab)}" in res.out, res.out
    assert f"{label}: OK" in res.out, res.out
    empty = private_dir(tmp_path / "empty")
    res = cli(config(lab, "check-empty.toml", SIGNED,
                     {"store": "file", "directory": str(empty)}), "check")
    print(res.out)
    assert res.rc == 1, res.text
    assert f"zone {SIGNED} owner KSK store file {empty}: note: {summary('none', lab)}" in res.out
    assert f"the zone serves owner KSK {t}, which the store does not hold" in res.out
    res = cli(config(lab, "check-typo.toml", SIGNED,
                     {"store": "file", "directory": str(tmp_path / "typo")}), "check")
    assert res.rc == 1 and "does not exist" in res.out, res.text
    assert not (tmp_path / "typo").exists()


# --------------------------------------------------------------------------- PKCS#11


@pytest.fixture(scope="module")
def token(lab: Model1Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A SoftHSM2 token of its own holding one KSK under the prefix ``other`` (not the
    zone's key): what a wrong token label or key label prefix finds."""
    where = tmp_path_factory.mktemp("hsm")
    (where / "tokens").mkdir(mode=0o700)
    conf = where / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {where / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    pin = secrets.token_hex(6)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "safety", "--pin",
                    pin, "--so-pin", secrets.token_hex(6)], check=True, capture_output=True,
                   env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    base = {"store": "pkcs11", "token_label": "safety", "pin": pin,
            "module_env": {"SOFTHSM2_CONF": str(conf)}}
    (made,) = _generate_elsewhere([OwnerKskConfig.model_validate(
        {**base, "key_label_prefix": "other"})])
    return {"base": base, "other_tag": made.key_tag}


def test_pkcs11_prefix_matching_nothing_or_another_key_is_refused(
        lab: Model1Lab, token: dict[str, Any]) -> None:
    before = sync_processes(lab.config_path, SIGNED)
    for prefix, held in (("typo", "none"), ("other", str(token["other_tag"]))):
        path = config(lab, f"pkcs11-{prefix}.toml", SIGNED,
                      {**token["base"], "key_label_prefix": prefix})
        refused_and_unchanged(lab, sync(path, SIGNED), "nothing was changed", summary(held, lab))
    # the token still holds just the one key: nothing was generated under "typo"
    res = cli_proc(config(lab, "pkcs11-check.toml", SIGNED,
                          {**token["base"], "key_label_prefix": "typo"}), "check")
    assert res.rc == 1 and summary("none", lab) in res.out, res.text
    assert sync_processes(lab.config_path, SIGNED) == before


# --------------------------------------------------------------------------- KMS (moto)


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


def test_kms_alias_matching_nothing_or_another_key_is_refused(lab: Model1Lab, kms: Any) -> None:
    other = KmsKskStore(region=REGION, message_type="RAW", alias_prefix="other").generate()
    before = sync_processes(lab.config_path, SIGNED)
    for prefix, held in (("typo", "none"), ("other", str(other.key_tag))):
        path = config(lab, f"kms-{prefix}.toml", SIGNED,
                      {"store": "kms", "region": REGION, "message_type": "RAW",
                       "alias_prefix": prefix})
        refused_and_unchanged(lab, cli(path, "sync", SIGNED), "nothing was changed",
                              summary(held, lab))
    assert len(kms.list_keys()["Keys"]) == 1, "a key was created in KMS"
    assert sync_processes(lab.config_path, SIGNED) == before


# --------------------------------------------------------------------------- the daemon


def test_daemon_with_a_wrong_store_changes_nothing(lab: Model1Lab, tmp_path: Path) -> None:
    """Re-signing is due (the served signatures expire within the refresh window asked
    here), so a daemon with the guard missing would sign with a new key at once."""
    empty = private_dir(tmp_path / "empty")

    def mutate(data: dict[str, Any]) -> None:
        data["zones"][0]["owner_ksk"] = {"store": "file", "directory": str(empty)}

    path = write_config(lab, "daemon.toml", zones=[SIGNED], mutate=mutate,  # type: ignore[arg-type]
                        policy={"signature_validity": "6h", "signature_refresh": "5h"})
    before = sync_processes(lab.config_path, SIGNED)
    res = cli_proc(path, "run", "--once")
    assert res.rc == 1, res.text  # a cron job must see the refusal
    assert f"1 zone(s) failed or were refused: {SIGNED}" in res.err, res.text
    assert "nothing was changed" in res.err and summary("none", lab) in res.err, res.text
    assert list(empty.iterdir()) == []
    assert sync_processes(lab.config_path, SIGNED) == before
    expect_served(lab, SIGNED)
    resolve_ad(lab, SIGNED)


# --------------------------------------------------------------------------- ksk init


def test_ksk_init_refused_for_a_signed_zone(lab: Model1Lab, tmp_path: Path) -> None:
    new = tmp_path / "new"
    res = cli(config(lab, "init-signed.toml", SIGNED, {"store": "file", "directory": str(new)}),
              "ksk", "init", SIGNED)
    print(res.err)
    t = tag(lab, SIGNED)
    assert res.rc == 1, res.text
    assert "refusing to make an owner KSK; nothing was changed" in res.err
    assert f"the zone serves KSK(s) {t}" in res.err
    assert f"the parent's DS names key tag(s) {t}" in res.err
    assert not new.exists(), "ksk init made the directory although it refused"
    expect_served(lab, SIGNED)


def _until_ds(lab: Model1Lab, zone: str, want: Callable[[list[str]], bool]) -> None:
    wait_until(lambda: want(lab.parent_ds(zone)), 30, f"the parent's DS for {zone}",
               interval=0.3)


def test_ksk_init_for_an_undelegated_zone_then_sync_validates(
        lab: Model1Lab, tmp_path: Path) -> None:
    assert servfails(lab, FRESH) == ["k0", "k1"] and lab.parent_ds(FRESH) == []
    # the lab's own store for FRESH holds a key: init refuses to add another
    res = cli(config(lab, "init-labstore.toml", FRESH), "ksk", "init", FRESH)
    assert res.rc == 1 and f"already holds key tag(s) {tag(lab, FRESH)}" in res.err, res.text
    res = cli(config(lab, "init-deep.toml", FRESH,
                     {"store": "file", "directory": str(tmp_path / "a" / "b")}),
              "ksk", "init", FRESH)
    assert res.rc == 1 and "does not exist" in res.err, res.text
    assert not (tmp_path / "a").exists()
    keys = tmp_path / "keys"
    path = config(lab, "init.toml", FRESH, {"store": "file", "directory": str(keys)})
    res = ok(cli(path, "ksk", "init", FRESH))
    print(res.out)
    assert keys.stat().st_mode & 0o777 == 0o700
    (pem,) = keys.iterdir()
    assert pem.stat().st_mode & 0o777 == 0o600
    dnskey_line = next(ln for ln in res.out.splitlines() if " IN DNSKEY " in ln)
    new = Key(dnskey_line.split(" IN DNSKEY ", 1)[1])
    ds_line = next(ln for ln in res.out.splitlines() if " IN DS " in ln)
    assert ds_line == f"{FRESH} IN DS {new.ds(FRESH).text}"
    assert f"generated owner KSK {new.key_tag}" in res.out
    entry = [e for e in history(path, FRESH) if e["kind"] == "ksk-init"][-1]
    assert entry["evidence"]["key_tag"] == new.key_tag, json.dumps(entry)
    again = cli(path, "ksk", "init", FRESH)
    assert again.rc == 1 and f"already holds key tag(s) {new.key_tag}" in again.err
    # the owner registers the DS `ksk init` printed (the parent agent, like a registry,
    # bootstraps no DS from CDS); the first sync signs with that KSK
    lab.register_ds(FRESH, [new.ds(FRESH).text])
    res = ok(sync(path, FRESH))
    assert f"{FRESH}: synced" in res.out and "generated owner KSK" not in res.text, res.text
    _until_ds(lab, FRESH, lambda ds: [d.split()[0] for d in ds] == [str(new.key_tag)])
    resolve_ad(lab, FRESH)
    # now the zone is signed and delegated: another empty store gets no key
    later = tmp_path / "later"
    res = cli(config(lab, "init-later.toml", FRESH, {"store": "file", "directory": str(later)}),
              "ksk", "init", FRESH)
    assert res.rc == 1 and f"the zone serves KSK(s) {new.key_tag}" in res.err, res.text
    assert not later.exists()
