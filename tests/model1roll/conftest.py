"""Model 1 rollover integration tests: the owner KSK (SoftHSM2 token or key files) signs the
combined DNSKEY RRset that real Knot DNS offline-KSK servers serve; a real PowerDNS parent
follows the CDS through the lab's scanner; a validating Unbound answers -- no mocks.

Each module starts one Model 1 lab (module-scoped, several zones, always stopped) so the
modules run in parallel with ``-n 2 --dist loadfile``. Every ``multisigner`` command runs
as a real process: the PKCS#11 store fixes SoftHSM2's configuration for the whole process
that loads it. Every rollover runs under the independent invariant watcher
(tests/rollover/watcher.py) and the Unbound AD probe (tests/rollover/probe.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SERVERS = ("knotd", "pdns_server", "unbound", "multisigner", "orchestrator.lab", "keymgr",
           "knotc")


def _survivors(base: str) -> list[str]:
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] in "ZX":
            continue
        if base in cmd and any(s in cmd for s in SERVERS):
            left.append(f"{entry.name}: {cmd}")
    return left


@pytest.fixture(scope="session", autouse=True)
def no_survivors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: no Knot, PowerDNS, Unbound, scanner, daemon or CLI started under
    our temp dir still runs."""
    yield
    left = _survivors(str(tmp_path_factory.getbasetemp()))
    assert not left, "processes survived the model 1 rollover tests:\n" + "\n".join(left)
