"""Rollover integration tests: real PowerDNS providers, the lab's CDS-scanning parent, a
validating Unbound, the ``multisigner`` CLI and daemon -- no mocks.

Each module starts its own lab (module-scoped, several zones, always stopped) so modules
run in parallel with ``-n 2 --dist loadfile``. Every rollover runs under an independent
invariant watcher (watcher.py) and an Unbound checker (probe.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from survivors import survivors


@pytest.fixture(scope="session", autouse=True)
def no_survivors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: no server, scanner or daemon started under our temp dir runs."""
    yield
    left = survivors(str(tmp_path_factory.getbasetemp()))
    assert not left, "processes survived the rollover tests:\n" + "\n".join(left)
