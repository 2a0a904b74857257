"""The CLI's start-up stays light: ``--help`` and usage errors import none of the heavy
libraries a command needs (orchestrator/cli.py), and a command on an already-migrated
state database does not import alembic (state/database.py ``at_head``).

Checked from ``sys.modules`` in a fresh interpreter, so the result does not depend on
what this test process has imported, nor on how loaded the machine is (the time itself
is measured by bench/bench_cli_start.py, not asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What a command may need but --help must not pay for (each costs 50-500 ms to import).
HEAVY = ("pydantic", "sqlalchemy", "sqlmodel", "alembic", "httpx", "dns", "cryptography",
         "apscheduler", "prometheus_client", "rich", "tenacity", "psycopg", "state",
         "providers", "core.config", "orchestrator.runtime", "orchestrator.engine",
         "multisigner_lab")

_PROBE = """
import json, sys
from orchestrator.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _imported(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=60, check=False)
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    return int(result["code"] or 0), set(result["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("argv,code", [
    (["--help"], 0),
    (["acme", "--help"], 0),
    (["status", "--no-such-option"], 2),
    (["rollover"], 2),  # ZONE missing: argparse's usage error
])
def test_help_and_usage_errors_import_nothing_heavy(argv: list[str], code: int) -> None:
    got, modules = _imported(argv)
    assert got == code
    assert _heavy(modules) == []


def test_a_command_imports_its_module_when_chosen(tmp_path: Path) -> None:
    # The probe itself must see heavy imports once a command runs, or the test above
    # would pass on a probe that sees nothing.
    env = {**os.environ, "MULTISIGNER_CONFIG": str(tmp_path / "missing.toml")}
    got, modules = _imported(["status", "example.test."], env)
    assert got == 2  # no such config file: a configuration error
    assert "orchestrator.zone_commands" in modules
    assert "core.config" in modules


def test_head_revision_agrees_with_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from state.database import MIGRATIONS_DIR, head_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()


_OPEN = """
import json, sys
from state.store import StateStore
store = StateStore.open(sys.argv[1])
store.close()
print(json.dumps("alembic" in sys.modules))
"""


def test_a_migrated_database_is_opened_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"

    def opened_with_alembic() -> bool:
        proc = subprocess.run([sys.executable, "-c", _OPEN, url], capture_output=True,
                              text=True, cwd=REPO, timeout=60, check=True)
        return bool(json.loads(proc.stdout))

    assert opened_with_alembic()  # a new database: migrated by alembic
    assert not opened_with_alembic()  # at the head revision: one query, no alembic


@pytest.mark.parametrize("value", ["abc", "1", "0", "99999"])
def test_a_bad_lease_length_is_a_configuration_error(tmp_path: Path, value: str) -> None:
    env = {**os.environ, "MULTISIGNER_LEASE_SECONDS": value,
           "MULTISIGNER_CONFIG": str(tmp_path / "missing.toml")}
    proc = subprocess.run([sys.executable, "-c", _PROBE, "status", "example.test."],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
                          check=False)
    assert json.loads(proc.stderr.strip().splitlines()[-1])["code"] == 2
    assert f"MULTISIGNER_LEASE_SECONDS={value!r}: give the zone lease length" in proc.stderr


def test_the_lease_length_from_the_environment() -> None:
    code = ("from orchestrator.runtime import LEASE_SECONDS; print(LEASE_SECONDS)")
    for env, want in (({}, "120.0"), ({"MULTISIGNER_LEASE_SECONDS": "5"}, "5.0")):
        base = {k: v for k, v in os.environ.items() if k != "MULTISIGNER_LEASE_SECONDS"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=REPO, env={**base, **env}, timeout=60, check=True).stdout
        assert out.strip() == want
