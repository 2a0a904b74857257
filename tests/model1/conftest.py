"""Model 1 integration tests: the zone owner's KSK (SoftHSM2 token or key files) signs the
combined DNSKEY RRset that real Knot DNS servers in offline-KSK mode serve; a real PowerDNS
parent with the lab's CDS scanner, a validating Unbound, the ``multisigner`` CLI and
daemon -- no mocks.

Each module starts its own lab (module-scoped, several zones, always stopped) so modules
run in parallel with ``-n 2 --dist loadfile``. The CLI runs as a real process wherever it
may open the PKCS#11 store (``sync``, ``run``): loading SoftHSM2 fixes its configuration
for the whole process (providers/kskstore/pkcs11store.py), and a test must not leave
that behind for the next one on its worker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from survivors import survivors


@pytest.fixture(scope="session", autouse=True)
def no_survivors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: no Knot, PowerDNS, Unbound, scanner, daemon or keymgr wrapper
    started under our temp dir still runs."""
    yield
    left = survivors(str(tmp_path_factory.getbasetemp()))
    assert not left, "processes survived the model 1 tests:\n" + "\n".join(left)
