"""Model 1 signer add/remove interlocks: each refusal exits 1 (2 for a usage error) with a
message naming the reason, and changes nothing -- at any Knot (what it serves, signatures
and SOA serial included, and its key database), at the parent, in the owner's key store,
in the membership, the processes or the history.

A Knot without the zone: an extra knotd ``kx`` (its own config, loopback address, KASP
database), configured as a provider in a config copy, whose Knot configuration has only
``alg.test.`` -- with ED25519 keys, so it also stands for a joiner whose ZSK has another
algorithm than the zone (ECDSAP256SHA256)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rollover.rollkit import write_config

from multisigner_lab.knot import KnotInstance
from multisigner_lab.model1 import KnotServer, Model1Lab
from signers_m1.m1kit import (
    LAB,
    LONG,
    cli,
    config_copy,
    history,
    knot_snapshot,
    m1_lab,
    ms,
    processes,
    refused,
    signers,
    sync,
)

pytestmark = LAB

SYNCED = "synced.test."  # k0 + k1 in their steady state; k2 ready to join; kx lacks it
ALG = "alg.test."  # synced (k0 + k1); kx has it configured, with an ED25519 ZSK
FRESH = "fresh.test."  # never synced: k0 and k1 answer SERVFAIL (no SKR yet)
LAST = "last.test."  # a config (own state database) whose only signer is k0


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Model1Lab, KnotServer]]:
    with m1_lab(tmp_path_factory, "m1sig-refuse", providers=3,
                zones=[SYNCED, ALG, FRESH, LAST], store="file",
                delegated=["k0", "k1"]) as running:
        extra = KnotInstance.create("kx", running.directory / "kx", zones=[ALG],
                                    ttl=running.ttl, algorithm="ed25519")
        try:
            extra.start()
            kx = KnotServer("kx", extra.address, extra.port, "ns1.kx.test.", extra.conf_path,
                            extra.dir)
            for zone in (SYNCED, ALG):
                sync(config_copy(running, f"sync-{zone}toml", zones=[zone], policy=LONG), zone)
            yield running, kx
        finally:
            extra.stop()


@pytest.fixture(scope="module")
def lab(setup: tuple[Model1Lab, KnotServer]) -> Model1Lab:
    return setup[0]


@pytest.fixture(scope="module")
def config(setup: tuple[Model1Lab, KnotServer]) -> Path:
    """The lab's config (zones but LAST, fast signatures off) plus provider ``kx``."""
    lab, kx = setup
    path = config_copy(lab, "refuse.toml", zones=[SYNCED, ALG, FRESH], policy=LONG)
    text = path.read_text().replace("\n[[zones]]", "\n".join([
        "", "[[providers]]", 'name = "kx"', 'type = "knot"', f'knot_config = "{kx.conf_path}"',
        f'nameservers = ["{kx.nameserver}"]', f'ns_names = ["{kx.ns_name}"]', "",
        "[[zones]]"]), 1)
    path.write_text(text)
    assert [p["name"] for p in tomllib.loads(text)["providers"]] == ["k0", "k1", "k2", "kx"]
    return path


def everything(lab: Model1Lab, kx: KnotServer, config: Path, zone: str) -> dict[str, Any]:
    knots = {k.name: knot_snapshot(k, zone) for k in lab.providers}
    if zone == ALG:
        knots["kx"] = knot_snapshot(kx, zone)
    store = Path(lab.state["owner_ksk"]["directories"][zone])
    return {
        "knots": knots,
        "parent": (lab.parent_ns(zone), lab.parent_ds(zone)),
        "store": sorted((p.name, p.read_bytes()) for p in store.iterdir()),
        "processes": processes(config, zone),
        "history": history(config, zone),
        "signers": signers(config, zone),
    }


def refuses(setup: tuple[Model1Lab, KnotServer], config: Path, zone: str, args: list[str],
            *needles: str, code: int = 1) -> str:
    lab, kx = setup
    before = everything(lab, kx, config, zone)
    # a real process: the CLI as an operator runs it
    message = refused(ms(config, "signer", *args), *needles, code=code)
    print(f"signer {' '.join(args)}: exit {code}: {message}")
    after = everything(lab, kx, config, zone)
    for what in before:
        assert after[what] == before[what], f"a refused command changed {what}"
    return message


def test_remove_the_last_signer(setup: tuple[Model1Lab, KnotServer]) -> None:
    lab, _ = setup

    def only_k0(data: dict[str, Any]) -> None:
        data["state"]["url"] = "sqlite:///" + str(lab.directory / "last.db")
        for z in data["zones"]:
            z["signers"] = ["k0"]

    config = write_config(lab, "last.toml", zones=[LAST], policy=LONG, mutate=only_k0)  # type: ignore[arg-type]
    assert signers(config, LAST) == ["k0"]  # (creates the state database)
    sync(config, LAST)  # k0 serves it; the parent still delegates to k0 and k1
    refuses(setup, config, LAST, ["remove", LAST, "k0"], "refusing to remove signer k0",
            "nothing was changed", "k0 is the last signer")


def test_add_a_provider_that_is_already_a_signer(setup: tuple[Model1Lab, KnotServer],
                                                 config: Path) -> None:
    refuses(setup, config, SYNCED, ["add", SYNCED, "k1"], "refusing to add signer k1",
            "nothing was changed", "k1 is already a signer")


def test_remove_a_provider_that_is_no_signer(setup: tuple[Model1Lab, KnotServer],
                                             config: Path) -> None:
    refuses(setup, config, SYNCED, ["remove", SYNCED, "k2"], "k2 is not a signer")


def test_add_a_provider_not_in_the_config(setup: tuple[Model1Lab, KnotServer],
                                          config: Path) -> None:
    refuses(setup, config, SYNCED, ["add", SYNCED, "k9"], "no provider named 'k9'",
            "configured: k0, k1, k2, kx", code=2)


def test_add_a_knot_without_the_zone(setup: tuple[Model1Lab, KnotServer], config: Path) -> None:
    _, kx = setup
    done = cli(config, "check")  # kx is a working Knot provider, only without the zone
    assert done.rc == 0 and "provider kx: OK" in done.out, done.text
    message = refuses(setup, config, SYNCED, ["add", SYNCED, "kx"], "refusing to add signer kx",
                      "nothing was changed", "provider 'kx'", "does not serve the zone",
                      str(kx.conf_path))
    assert "Traceback" not in message


def test_add_a_knot_with_another_algorithm(setup: tuple[Model1Lab, KnotServer],
                                           config: Path) -> None:
    refuses(setup, config, ALG, ["add", ALG, "kx"], "refusing to add signer kx",
            "nothing was changed", "kx holds ZSK", "ED25519", "ECDSAP256SHA256")


def test_add_on_a_zone_never_synced(setup: tuple[Model1Lab, KnotServer], config: Path) -> None:
    lab, _ = setup
    assert lab.parent_ns(FRESH) == ["ns1.k0.test.", "ns1.k1.test."]
    refuses(setup, config, FRESH, ["add", FRESH, "k2"], "refusing to add signer k2",
            "nothing was changed", f"run 'multisigner sync {FRESH}' first")
