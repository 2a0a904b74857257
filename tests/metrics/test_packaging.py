"""packaging/: the systemd unit passes ``systemd-analyze verify`` with no warning and a
low ``security`` exposure, and has the hardening the deployment relies on; the
Containerfile and its run script pass the structural lint (the image is not built here:
no registry access for base images)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from prereq import needs

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "systemd" / "multisigner.service"
CONTAINER = REPO / "packaging" / "container"
MULTISIGNER = Path(sys.executable).with_name("multisigner")
NEEDS_SYSTEMD = needs("systemd-analyze", what="Debian package systemd")

sys.path.insert(0, str(CONTAINER))
from lint_containerfile import lint  # noqa: E402 (a script beside the Containerfile)


def settings(text: str) -> dict[str, list[str]]:
    """``Key`` -> every value it is given (systemd keys may repeat)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def local_unit(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart pointing at this environment's ``multisigner`` (verify
    checks that the binary exists)."""
    path = tmp_path / "multisigner.service"
    path.write_text(text.replace("/opt/multisigner/bin/multisigner", str(MULTISIGNER)))
    return path


def verify(path: Path) -> str:
    """``systemd-analyze verify``: its output (warnings included; empty when clean)."""
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, check=False, timeout=60)
    return (done.stdout + done.stderr).strip() or ("" if done.returncode == 0 else "failed")


def test_the_unit_is_hardened() -> None:
    unit = settings(UNIT.read_text())
    for key, value in {"DynamicUser": "yes", "ProtectSystem": "strict",
                       "NoNewPrivileges": "yes", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "CapabilityBoundingSet": "", "UMask": "0077",
                       "StateDirectoryMode": "0700"}.items():
        assert unit.get(key) == [value], (key, unit.get(key))
    assert unit["StateDirectory"] == ["multisigner multisigner/keys"]
    assert any(v.startswith("multisigner.toml:") for v in unit["LoadCredential"])
    assert "MULTISIGNER_CONFIG=%d/multisigner.toml" in unit["Environment"]
    assert any(v.startswith("MULTISIGNER_REPLICA=") for v in unit["Environment"])
    assert "--metrics-listen" in unit["ExecStart"][0]


@NEEDS_SYSTEMD
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    assert verify(local_unit(tmp_path, UNIT.read_text())) == ""


@NEEDS_SYSTEMD
@pytest.mark.parametrize(("good", "bad"), [("ProtectSystem=strict", "ProtectSytem=strict"),
                                           ("ProtectSystem=strict", "ProtectSystem=strictly"),
                                           ("Type=exec", "Type=forking-ish")])
def test_verify_catches_a_broken_unit(tmp_path: Path, good: str, bad: str) -> None:
    text = UNIT.read_text()
    assert good in text
    assert verify(local_unit(tmp_path, text.replace(good, bad))) != ""


@NEEDS_SYSTEMD
def test_security_exposure_is_low(tmp_path: Path) -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                           str(local_unit(tmp_path, UNIT.read_text()))],
                          capture_output=True, text=True, check=False, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout[-3000:]


def test_the_container_recipe_passes_the_lint() -> None:
    assert lint(CONTAINER / "Containerfile", CONTAINER / "run.sh") == []
    done = subprocess.run([sys.executable, str(CONTAINER / "lint_containerfile.py")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("good", "bad", "problem"), [
    ("USER 65532:65532\n", "", "sets no USER"),
    ("USER 65532:65532\n", "USER root\n", "non-root uid"),
    ('CMD ["run", "--metrics-listen", "0.0.0.0:9477"]', "CMD multisigner run",
     "exec (JSON) form"),
    ("COPY state ./state\n", "", "package state"),
    ("COPY runbooks ./runbooks", "ADD runbooks ./runbooks", "ADD: use COPY"),
    ("python:3.11-slim-bookworm AS build", "python AS build", "pin a tag"),
    (" --no-install-recommends", "", "--no-install-recommends"),
    ("HEALTHCHECK", "# HEALTHCHECK", "no HEALTHCHECK"),
])
def test_the_lint_catches_a_bad_recipe(tmp_path: Path, good: str, bad: str,
                                       problem: str) -> None:
    text = (CONTAINER / "Containerfile").read_text()
    assert good in text
    broken = tmp_path / "Containerfile"
    broken.write_text(text.replace(good, bad))
    problems = lint(broken, CONTAINER / "run.sh", REPO)
    assert any(problem in p for p in problems), problems


def test_the_lint_checks_the_run_script(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text((CONTAINER / "run.sh").read_text().replace("--read-only ", ""))
    assert lint(CONTAINER / "Containerfile", script, REPO) == [
        "run.sh: --read-only missing (a read-only root filesystem)"]
