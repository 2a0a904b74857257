"""The acme.sh hook of docs/acme.md, run the way acme.sh runs a ``dns_`` hook.

acme.sh itself is not installed here (it is distributed from its GitHub repository, not
as a Debian or PyPI package, and this environment fetches from neither GitHub nor any
other site). So the test reproduces acme.sh's calling convention exactly, as its
``_issue`` and cleanup code do it: in a POSIX ``sh`` subshell it sources
``dnsapi/dns_NAME.sh`` (``. "$d_api"``), checks that ``dns_NAME_add`` exists, calls
``dns_NAME_add "$txtdomain" "$txt"`` with ``txtdomain=_acme-challenge.<domain>`` (no
trailing dot) and treats a non-zero status as a failed challenge; cleanup calls
``dns_NAME_rm "$txtdomain" "$txt"`` the same way. The hook file is the one printed in
docs/acme.md, byte for byte, so the documented example is what runs.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from acmekit import CHAL, HOST, digest, everywhere, set_everywhere
from integration.itkit import MULTISIGNER, NEEDS_SERVERS, REPO

from multisigner_lab import Lab

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]

# acme.sh's protocol for one challenge ($1 add|rm, $2 hook file, $3 txtdomain, $4 value)
ACMESH_CALL = r"""
d_api="$2"; _currentRoot=dns_multisigner; txtdomain="$3"; txt="$4"
(
  if ! . "$d_api"; then echo "Load file $d_api error" >&2; exit 1; fi
  command="${_currentRoot}_$1"
  if ! command -v "$command" >/dev/null 2>&1; then
    echo "It seems that your api file is not correct, it must have a function named: $command" >&2
    exit 1
  fi
  if ! $command "$txtdomain" "$txt"; then echo "Error $1 txt for domain:$txtdomain" >&2; exit 1; fi
)
"""


def _documented_hook() -> str:
    doc = (REPO / "docs" / "acme.md").read_text()
    found = re.search(r"Save as `~/\.acme\.sh/dnsapi/dns_multisigner\.sh`:\n\n```sh\n(.*?)```",
                      doc, re.S)
    assert found, "docs/acme.md no longer shows the acme.sh hook file"
    return found.group(1)


def _acmesh(hook: Path, config: Path, action: str, txtdomain: str, value: str
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MULTISIGNER_CONFIG": str(config),
           "PATH": f"{MULTISIGNER.parent}:{os.environ.get('PATH', '')}"}
    return subprocess.run(["sh", "-c", ACMESH_CALL, "acme.sh", action, str(hook), txtdomain,
                           value], capture_output=True, text=True, env=env, timeout=120,
                          check=False, cwd=REPO)


def test_acmesh_hook_publishes_waits_and_cleans_up(synced: Lab, tmp_path: Path) -> None:
    lab = synced
    hook = tmp_path / "dnsapi" / "dns_multisigner.sh"
    hook.parent.mkdir()
    hook.write_text(_documented_hook())
    host = f"sh.{HOST}"
    txtdomain, target = f"_acme-challenge.{host}".rstrip("."), f"sh.{CHAL}"
    set_everywhere(lab, HOST, f"_acme-challenge.{host}", "CNAME", [target])
    apex, wild = digest("acme.sh apex"), digest("acme.sh wildcard")
    # one value in 64 starts with "-" (base64url): the hook must not let the CLI take it
    # for an option (docs/acme.md puts "--" before the arguments; without it this failed)
    assert apex.startswith("-") and not wild.startswith("-")
    try:
        for value in (apex, wild):  # acme.sh adds every value of the order, then validates
            done = _acmesh(hook, lab.config_path, "add", txtdomain, value)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "served by all" in done.stdout, done.stdout  # add returned after --wait
        assert all(v == {apex, wild} for v in everywhere(lab, CHAL, target))
        done = _acmesh(hook, lab.config_path, "rm", txtdomain, apex)
        assert done.returncode == 0, done.stdout + done.stderr
        assert all(v == {wild} for v in everywhere(lab, CHAL, target))
        # a failure reaches acme.sh as a non-zero status (it then aborts the order)
        done = _acmesh(hook, lab.config_path, "add", txtdomain, "not-a-dns-01-value")
        assert done.returncode != 0 and "Error add txt" in done.stderr, done
    finally:
        _acmesh(hook, lab.config_path, "rm", txtdomain, wild)
        set_everywhere(lab, HOST, f"_acme-challenge.{host}", "CNAME", [])
    assert all(v == set() for v in everywhere(lab, CHAL, target))
