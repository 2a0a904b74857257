"""Model 1 signer add/remove integration tests: Knot DNS offline-KSK providers, the owner KSK
(key files or a SoftHSM2 token), the lab's CDS/CSYNC-following PowerDNS parent, a
validating Unbound, the ``multisigner`` CLI and daemon as real processes -- no mocks.

One Model 1 lab per module (always stopped); run in parallel with ``-n 2 --dist
loadfile``. Helpers: m1kit.py (the rollover suite's invariant watcher restricted to the
providers resolvers can reach, from tests/signers, and its Unbound AD probe)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from survivors import survivors

SERVERS = ("knotd", "pdns_server", "unbound", "multisigner", "lab", "keymgr",
           "knotc")


@pytest.fixture(scope="session", autouse=True)
def no_survivors_of_m1_signer_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: no knotd, pdns_server, unbound, scanner, daemon, CLI or Knot tool
    started under our temp dir still runs."""
    yield
    left = survivors(str(tmp_path_factory.getbasetemp()), SERVERS)
    assert not left, "processes survived the model 1 signer tests:\n" + "\n".join(left)
