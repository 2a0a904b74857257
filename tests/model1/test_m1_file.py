"""Model 1 with the owner KSK in key files and three Knot providers: sync from scratch
(test 1) and a key file or key directory others may read (test 4)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from model1.m1kit import (
    check_sync_from_scratch,
    expect_served,
    model1_lab,
    needs_tools,
    ok,
    servfails,
    sync,
    sync_processes,
)
from multisigner_lab.model1 import Model1Lab

pytestmark = [pytest.mark.lab, needs_tools("ldns-verify-zone", "dnssec-verify")]

SCRATCH = "sync.test."
PERM = "perm.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model1Lab]:
    with model1_lab(tmp_path_factory, "m1-file", providers=3, zones=[SCRATCH, PERM],
                    store="file") as lab:
        yield lab


def test_sync_from_scratch_three_knots_file_store(lab: Model1Lab, tmp_path: Path) -> None:
    for line in check_sync_from_scratch(lab, SCRATCH, tmp_path):
        print(line)


def test_key_file_or_directory_readable_by_others_refused(lab: Model1Lab) -> None:
    key_dir = Path(lab.state["owner_ksk"]["directories"][PERM])
    (pem,) = key_dir.glob("*.pem")
    files = sorted(key_dir.iterdir())
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    for path, mode, fix in ((pem, 0o644, f"chmod 600 {pem}"), (key_dir, 0o755,
                                                               f"chmod 700 {key_dir}")):
        path.chmod(mode)
        try:
            res = sync(lab.config_path, PERM)
        finally:
            path.chmod(0o600 if path == pem else 0o700)
        print(res.err)
        assert res.rc == 1, res.text
        assert f"owner KSK store file {key_dir}" in res.err, res.err
        assert str(path) in res.err and oct(mode)[2:] in res.err and fix in res.err, res.err
        assert servfails(lab, PERM) == ["k0", "k1", "k2"], "an SKR reached a Knot"
        assert sync_processes(lab.config_path, PERM) == []
        assert sorted(key_dir.iterdir()) == files, "the store was changed"
    res = ok(sync(lab.config_path, PERM))
    assert f"{PERM}: synced" in res.out and "generated owner KSK" not in res.text, res.text
    expect_served(lab, PERM)  # signed by the lab's owner KSK, the one in that file
