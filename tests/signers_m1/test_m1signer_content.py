"""Model 1: the zone content is compared before the delegation names a joining signer.

A joining Knot serves the zone only once the first combined set loaded it (import-keys),
so its content cannot be compared when the add starts; the ``add-ns`` step's
``content-matches`` precondition compares it then. Here k2 serves an extra TXT record:
the add holds in ``add-ns:act`` naming the difference, no NS RRset names k2 and nothing
changes at the parent; once the record is gone the add finishes.

The owner KSK is in key files: the engine may run in this process."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from rollover.rollkit import step_until
from signers.signerkit import advance_until

from multisigner_lab.model1 import Model1Lab
from signers_m1.m1kit import (
    LAB,
    LONG,
    audit_ok,
    check_members,
    cli,
    config_copy,
    latest,
    m1_lab,
    ok,
    served_ns,
    status,
    sync,
    verify_ok,
)

pytestmark = LAB

ZONE = "content.test."
EXTRA = ("www", "300", "TXT", '"only at k2"')


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with m1_lab(tmp_path_factory, "m1sig-content", providers=3, zones=[ZONE], ttl=2,
                ds_ttl=3, store="file", delegated=["k0", "k1"]) as running:
        yield running


def knotc(lab: Model1Lab, name: str, *args: str) -> str:
    done = subprocess.run(["knotc", "-c", str(lab.provider(name).conf_path), *args],
                          capture_output=True, text=True, timeout=30, check=True)
    assert "error" not in done.stdout, done.stdout
    return done.stdout


def change(lab: Model1Lab, name: str, op: str, *record: str) -> None:
    """One committed knotc zone transaction at ``name`` (re-signed by its ZSK)."""
    knotc(lab, name, "zone-begin", ZONE)
    knotc(lab, name, op, ZONE, *record)
    knotc(lab, name, "zone-commit", ZONE)


def test_add_holds_until_the_joiners_content_matches(lab: Model1Lab) -> None:
    config = config_copy(lab, "content.toml", zones=[ZONE], policy=LONG)
    sync(config, ZONE)
    time.sleep(lab.ttl + 1)
    check_members(lab, ZONE, ["k0", "k1"])
    ok(cli(config, "signer", "add", ZONE, "k2"))
    advance_until(config, ZONE, lambda s: s == "add-ns:act")
    change(lab, "k2", "zone-set", *EXTRA)  # k2 serves the zone by now: a real difference

    answer = step_until(config, ZONE, lambda s: True)  # one step: the precondition fails
    assert answer["state"] == "add-ns:act", answer
    row = latest(config, ZONE, "signer-add")
    waiting = row["waiting_for"]
    for needle in ("precondition", "CONTENT_DIFFERS", f"www.{ZONE} TXT differs",
                   "k2: \"only at k2\"", "k0: absent", "bring k2's zone data in line"):
        assert needle in waiting, (needle, waiting)
    # status shows the same reason; no NS RRset names k2, the parent still delegates to
    # k0 and k1 only
    process = status(config, ZONE)["process"]
    assert "CONTENT_DIFFERS" in str(process), process
    for name in ("k0", "k1", "k2"):
        assert served_ns(lab.provider(name), ZONE) == {"ns1.k0.test.", "ns1.k1.test."}, name
    assert lab.parent_ns(ZONE) == ["ns1.k0.test.", "ns1.k1.test."]
    res = cli(config, "verify", ZONE, "--content")
    assert res.rc == 1 and "CONTENT_DIFFERS" in res.out, res.text

    change(lab, "k2", "zone-unset", "www", "TXT")
    step_until(config, ZONE, lambda s: s == "done", timeout=60)
    check_members(lab, ZONE, ["k0", "k1", "k2"])
    verify_ok(config, ZONE)
    ok(cli(config, "verify", ZONE, "--content"))
    audit_ok(config)
