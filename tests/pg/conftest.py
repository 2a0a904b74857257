"""Fixtures of the PostgreSQL tests: one real server per pytest process (per xdist
worker), started on a free loopback port and always stopped, and a fresh database for
every test so tests neither see nor disturb each other.

Without the PostgreSQL binaries the tests are skipped, except in CI (``CI=true``), where
a missing server is a broken setup and must fail rather than pass as "skipped".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import PgServer, find_bindir, running_server
from prereq import require

from state import StateStore


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        require("PostgreSQL server binaries (initdb, postgres, pg_ctl) not found in "
                "$MULTISIGNER_PG_BINDIR, /usr/lib/postgresql/*/bin or PATH",
                "Debian package postgresql")
    with running_server(bindir, tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture
def pg_db(pg_server: PgServer) -> Iterator[str]:
    """The name of a new, empty database, dropped after the test."""
    name = pg_server.create_database()
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def pg_url(pg_server: PgServer, pg_db: str) -> str:
    """A ``postgresql+psycopg://`` URL of a new, empty (unmigrated) database."""
    return pg_server.url(pg_db)


@pytest.fixture
def store(pg_url: str) -> Iterator[StateStore]:
    """A migrated store on PostgreSQL; the same name as the SQLite unit tests' fixture, so
    their backend-independent tests run here unchanged (test_pg_unit_tests.py)."""
    with StateStore.open(pg_url) as opened:
        yield opened


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
