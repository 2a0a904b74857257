"""Model 1 signer add/remove integration tests: Knot DNS offline-KSK providers, the owner KSK
(key files or a SoftHSM2 token), the lab's CDS/CSYNC-following PowerDNS parent, a
validating Unbound, the ``multisigner`` CLI and daemon as real processes -- no mocks.

One Model 1 lab per module (always stopped); run in parallel with ``-n 2 --dist
loadfile``. Helpers: m1kit.py (the rollover suite's invariant watcher restricted to the
providers resolvers can reach, from tests/signers, and its Unbound AD probe)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SERVERS = ("knotd", "pdns_server", "unbound", "multisigner", "orchestrator.lab", "keymgr",
           "knotc")


def survivors(base: str) -> list[str]:
    """Command lines of live lab servers, controllers and Knot tools naming ``base``."""
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
def no_survivors_of_m1_signer_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: no knotd, pdns_server, unbound, scanner, daemon, CLI or Knot tool
    started under our temp dir still runs."""
    yield
    left = survivors(str(tmp_path_factory.getbasetemp()))
    assert not left, "processes survived the model 1 signer tests:\n" + "\n".join(left)
