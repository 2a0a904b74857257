"""Fixtures of the integration tests; the helpers are in ``itkit.py`` (a module name of its
own: several test directories have a ``conftest.py``, so ``from conftest import`` would be
ambiguous when the whole suite is collected)."""

from __future__ import annotations

from pathlib import Path

import pytest
from itkit import Result, Run

from orchestrator.cli import main


@pytest.fixture
def ms(capsys: pytest.CaptureFixture[str]) -> Run:
    """``ms(config_path, "sync", zone)``: the CLI in-process; exit code and output."""

    def run(config: Path, *args: str) -> Result:
        capsys.readouterr()
        rc = main(["--config", str(config), *args])
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return run
