"""The CI rule of tests/prereq.py, in a real pytest run: under CI=true a test skipped for
a missing prerequisite fails, naming it; without CI it is skipped; other skips stay
skips either way. The run uses the suite's own tests/conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

TESTS = Path(__file__).resolve().parents[1]
ABSENT = "no-such-binary-4f1c9"

TINY = f'''
import pytest
from prereq import needs, require_binary

@needs("{ABSENT}", what="Debian package nothing")
def test_marked():
    pass

def test_imperative():
    require_binary("{ABSENT}")

def test_ordinary_skip():
    pytest.skip("nothing collected to check")

@needs("sh")
def test_present():
    pass
'''


def run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "test_tiny.py").write_text(TINY)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
         "--junitxml", str(tmp_path / "junit.xml"),
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


def outcomes(tmp_path: Path) -> dict[str, str]:
    """test name -> passed/failure/error/skipped, from the run's JUnit XML."""
    out = {}
    for case in ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[case.get("name", "")] = kinds[0] if kinds else "passed"
    return out


def test_without_ci_a_missing_binary_skips(tmp_path: Path) -> None:
    res = run(tmp_path, None)
    assert res.returncode == 0, res.stdout + res.stderr
    assert outcomes(tmp_path) == {"test_marked": "skipped", "test_imperative": "skipped",
                                  "test_ordinary_skip": "skipped", "test_present": "passed"}
    assert f"missing prerequisite: {ABSENT} (Debian package nothing)" in res.stdout


@pytest.mark.parametrize("ci", ["true", "false"])
def test_under_ci_a_missing_binary_fails_the_run(tmp_path: Path, ci: str) -> None:
    res = run(tmp_path, ci)
    if ci == "false":  # only "true" (or "1", "yes") means CI
        assert res.returncode == 0, res.stdout + res.stderr
        assert set(outcomes(tmp_path).values()) == {"skipped", "passed"}
        return
    assert res.returncode == 1, res.stdout + res.stderr
    # a skipif mark acts in setup (reported as an error), require() in the call
    assert outcomes(tmp_path) == {"test_marked": "error", "test_imperative": "failure",
                                  "test_ordinary_skip": "skipped", "test_present": "passed"}
    assert res.stdout.count("a missing prerequisite fails the run instead of skipping") >= 2
    assert f"{ABSENT} (Debian package nothing)" in res.stdout
