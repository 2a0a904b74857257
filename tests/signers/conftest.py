"""Signer add/remove integration tests: real PowerDNS providers, the lab's CDS- and
CSYNC-following parent, a validating Unbound, the ``multisigner`` CLI and daemon -- no
mocks. One lab per module (several zones, always stopped); run in parallel with
``-n 2 --dist loadfile``. Helpers: signerkit.py; the invariant watcher and the Unbound
probe are the rollover suite's (tests/rollover), restricted to reachable providers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from survivors import survivors


@pytest.fixture(scope="session", autouse=True)
def no_survivors_of_signer_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: no server, scanner or daemon started under our temp dir runs."""
    yield
    left = survivors(str(tmp_path_factory.getbasetemp()))
    assert not left, "processes survived the signer tests:\n" + "\n".join(left)
