"""The Knot adapter's command seam: zone names on command lines and shell quoting under a
``command_prefix`` such as ``["ssh", host]`` (ssh joins its arguments with spaces for the
remote user's shell). Most checks run fake tools; the last one real Knot behind a prefix
that re-parses the command line the way ssh does."""

from __future__ import annotations

import asyncio
import json
import shlex
import stat
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from knotkit import NEEDS_KNOT, TTL, ZONE_TEXT, OwnerKsk, combined_skr, keyset, provider, served

from core.config import KnotProviderConfig
from core.errors import ProviderError
from multisigner_lab.knot import KnotInstance
from orchestrator.decide.membership import CSYNC_RECORD
from providers.knot.adapter import KnotProvider
from providers.knot.commands import KnotCommands, check_zone_name, command_line

T = TypeVar("T")
# A local stand-in for ssh: joins its arguments with spaces and has a shell run the result.
RESHELL = ["sh", "-c", 'eval "$*"', "sh"]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.mark.parametrize(
    "zone", ["example.test.", "example.test", "_dmarc.example.test.", "xn--bcher-kva.example.",
             "a-b.c_d.", ".", "0.192.in-addr.arpa."])
def test_hostname_zone_names_pass(zone: str) -> None:
    check_zone_name("k0", zone)


@pytest.mark.parametrize(
    "zone", ["", "a b.test.", "x;reboot.", "$(id).test.", "`id`.test.", "a'b.test.",
             "-rf.test.", "a-.test.", "a..test.", "..", "a/b.test.", "tëst.", "a\\046b.test.",
             "x" * 64 + ".test.", "a\nb."])
def test_other_zone_names_are_refused(zone: str) -> None:
    with pytest.raises(ProviderError, match="refusing zone name") as err:
        check_zone_name("k0", zone)
    assert "provider 'k0'" in str(err.value) and "only letters, digits" in str(err.value)


def test_arguments_are_shell_quoted_only_under_a_prefix() -> None:
    argv = ["knotc", "-c", "/etc/knot/knot.conf", "--", "zone-set", "a.", "@", "1", "TXT",
            '"two words"', "x;id", "$(id)", "it's"]
    assert command_line([], argv) == argv
    ssh = command_line(["ssh", "dns1"], argv)
    assert ssh[:2] == ["ssh", "dns1"]
    assert ssh[2:6] == ["knotc", "-c", "/etc/knot/knot.conf", "--"]  # nothing to quote
    # what the remote shell makes of ssh's space-joined command line: the same argv
    assert shlex.split(" ".join(ssh[2:])) == argv


def fake_tools(tmp_path: Path) -> tuple[Path, Path]:
    """A bin dir whose keymgr and knotc print their argv as JSON and log each run."""
    bin_dir, log = tmp_path / "bin", tmp_path / "runs.log"
    bin_dir.mkdir()
    for tool in ("keymgr", "knotc"):
        script = bin_dir / tool
        script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                          f"open({str(log)!r}, 'a').write('run\\n')\n"
                          "print(json.dumps(sys.argv[1:]))\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir, log


def commands(tmp_path: Path, prefix: list[str]) -> KnotCommands:
    return KnotCommands(KnotProviderConfig.model_validate(
        {"name": "kx", "knot_config": tmp_path / "knot conf", "nameservers": ["127.0.0.1:53"],
         "command_prefix": prefix}))


def test_arguments_survive_a_reparsing_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where an injected command would leave its files
    bin_dir, log = fake_tools(tmp_path)
    prefix = ["sh", "-c", f'PATH={bin_dir}:$PATH; eval "$*"', "sh"]
    args = ["example.test.", "x; touch pwned", "$(touch pwned2)", "two  spaces"]
    out = run(commands(tmp_path, prefix).run("keymgr", *args, zone="example.test."))
    # the path with a space, and every argument, arrive intact; nothing was executed
    assert json.loads(out) == ["-c", str(tmp_path / "knot conf"), "--", *args]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "runs.log"]
    assert log.read_text() == "run\n"


def test_bad_zone_name_runs_nothing(tmp_path: Path) -> None:
    bin_dir, log = fake_tools(tmp_path)
    prefix = ["sh", "-c", f'PATH={bin_dir}:$PATH; eval "$*"', "sh"]
    p = KnotProvider(KnotProviderConfig.model_validate(
        {"name": "kx", "knot_config": tmp_path / "knot.conf", "nameservers": ["127.0.0.1:53"],
         "command_prefix": prefix}))
    for call in (p.read_zone("x;touch pwned."), p.delete_key("a b.", "0" * 40),
                 p.set_apex_rrset("$(id).", "NS", ["ns1.example."], 60)):
        with pytest.raises(ProviderError, match="refusing zone name"):
            run(call)
    assert not log.exists()


@pytest.mark.lab
@NEEDS_KNOT
def test_real_knot_behind_a_reparsing_prefix(
    knots: tuple[KnotInstance, KnotInstance], owner: OwnerKsk
) -> None:
    """Everything the adapter runs, through a prefix whose shell re-parses the command
    line (as ssh's remote shell does): a signed key set is served, and NS and CSYNC (record
    data with spaces) are set."""
    k0, _ = knots
    p = provider(k0, command_prefix=RESHELL, skr_transfer="stdin")
    ksr = run(p.key_signing_request(ZONE_TEXT))
    run(p.serve_signed_keyset(ZONE_TEXT, keyset(combined_skr([ksr], [owner]))))
    assert run(p.zone_loaded(ZONE_TEXT))
    run(p.set_apex_rrset(ZONE_TEXT, "NS", ["ns1.k0.test.", "ns1.k1.test."], TTL))
    run(p.set_apex_rrset(ZONE_TEXT, "CSYNC", [CSYNC_RECORD], TTL))
    assert served(k0, "CSYNC").rrset[0].to_text() == CSYNC_RECORD == "0 1 NS"
    state = run(p.read_zone(ZONE_TEXT))
    assert state.ns == {"ns1.k0.test.", "ns1.k1.test."} and state.csync == {CSYNC_RECORD}
