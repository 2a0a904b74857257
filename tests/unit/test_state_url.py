"""The state database URL: a malformed one is a clear StateError that never shows the
password (the controller opens the store from a URL also outside config loading)."""

from __future__ import annotations

import pytest

from core.errors import StateError
from core.state_url import parse_url, redact_url
from state.store import StateStore


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://ms:hunter2@db:port/ms", "the port is not a number"),
        ("postgresql+psycopg://ms:hunter2@[::1/ms", "the port is not a number"),
        ("postgresql+psycopg://ms:hunter2@db:0/ms", "port 0 is out of range"),
        ("postgresql+psycopg://ms:hunter2@db:65536/ms", "port 65536 is out of range"),
        ("postgresql+psycopg://ms:hun@ter2@db/ms", "must be written %40"),
        ("ms hunter2 db", "is not a valid URL"),
    ],
)
def test_malformed_urls_fail_clearly_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(StateError) as info:
        StateStore(url)
    message = str(info.value)
    assert expected in message and message.startswith("state database URL "), message
    assert "hunter2" not in message and "ter2" not in message
    assert info.value.__cause__ is None  # the parser's own message may quote the URL


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://ms:hunter2@db:5432/ms", "postgresql+psycopg://ms:***@db:5432/ms"),
        ("postgresql://ms:hun@ter/2@db/ms", "postgresql://ms:***@db/ms"),
        ("postgresql://:hunter2@db/ms", "postgresql://:***@db/ms"),
        ("sqlite:///var/lib/ms/state.db", "sqlite:///var/lib/ms/state.db"),
    ],
)
def test_redaction(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_valid_urls_parse() -> None:
    assert parse_url("postgresql+psycopg://ms:pw@db:5432/ms").port == 5432
    assert parse_url("sqlite:///state.db").database == "state.db"
    assert parse_url("sqlite://").database is None
