"""Fixtures of the ACME tests (one lab per module: a host zone and a challenge zone
on three PowerDNS providers); helpers in acmekit.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from acmekit import CHAL, HOST
from integration.itkit import Result, Run, ms_subprocess, running_lab, wait_settled

from multisigner_lab import Lab
from orchestrator.cli import main


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "acme", providers=3, zones=[HOST, CHAL]) as lab:
        yield lab


@pytest.fixture(scope="module")
def synced(lab: Lab) -> Lab:
    """Both zones multi-signer synced (a validating resolver then trusts every signer)."""
    for zone in (HOST, CHAL):
        res = ms_subprocess(lab.config_path, "sync", zone)
        assert res.rc == 0, res
        wait_settled(res, lab)  # until no resolver may hold a pre-sync DNSKEY RRset
    return lab


@pytest.fixture
def ms(capsys: pytest.CaptureFixture[str]) -> Run:
    """``ms(config_path, "acme", ...)``: the CLI in-process; exit code and output."""

    def run(config: Path, *args: str) -> Result:
        capsys.readouterr()
        rc = main(["--config", str(config), *args])
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return run
