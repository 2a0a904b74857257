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

import pytest
from survivors import survivors

SERVERS = ("knotd", "pdns_server", "unbound", "multisigner", "lab", "keymgr",
           "knotc")


@pytest.fixture(scope="session", autouse=True)
def no_survivors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: no Knot, PowerDNS, Unbound, scanner, daemon or CLI started under
    our temp dir still runs."""
    yield
    left = survivors(str(tmp_path_factory.getbasetemp()), SERVERS)
    assert not left, "processes survived the model 1 rollover tests:\n" + "\n".join(left)
