"""Fixtures of the ACME tests; helpers in acmekit.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from integration.itkit import Result, Run

from orchestrator.cli import main


@pytest.fixture
def ms(capsys: pytest.CaptureFixture[str]) -> Run:
    """``ms(config_path, "acme", ...)``: the CLI in-process; exit code and output."""

    def run(config: Path, *args: str) -> Result:
        capsys.readouterr()
        rc = main(["--config", str(config), *args])
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return run
