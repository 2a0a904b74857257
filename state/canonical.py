"""Canonical forms shared by the state database and the audit chain.

The history chain hashes JSON text, so the same content must always produce the same
bytes: keys sorted, no whitespace, datetimes as RFC 3339 UTC with microseconds. Every
timestamp the state package accepts must be timezone-aware; a naive datetime is refused
rather than guessed, because a wrong guess silently shifts every TTL window by hours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core.errors import StateError

# Dictionary keys that name credentials. Evidence and process data are kept forever and
# printed by `history`, so a secret that slipped into them would leak; refuse instead.
_SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "password",
        "passwd",
        "secret",
        "tsig_secret",
        "pin",
        "private_key",
        "secret_access_key",
        "aws_secret_access_key",
    }
)
_SECRET_SUFFIXES = ("_secret", "_password", "_api_key", "_private_key")


def utc(value: datetime, what: str = "timestamp") -> datetime:
    """Return *value* converted to UTC; refuse naive datetimes."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise StateError(
            f"{what} {value.isoformat()} has no timezone; pass an aware datetime "
            "(e.g. datetime.now(UTC))"
        )
    return value.astimezone(UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


def utc_or_now(value: datetime | None, what: str = "timestamp") -> datetime:
    """*value* in UTC, or the current time when None (callers may pin time in tests)."""
    return utc(value, what) if value is not None else now_utc()


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC, always with microseconds, e.g. 2026-11-25T12:00:00.123456Z.

    A fixed width keeps the text (and so the chain hashes) independent of whether the
    microseconds happen to be zero.
    """
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, set | frozenset):
        # Sets have no order; sort so the text is reproducible.
        return sorted(value, key=lambda item: json.dumps(item, default=_default, sort_keys=True))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def canonical_json(value: object) -> str:
    """Deterministic JSON text: sorted keys, compact separators, RFC 3339 datetimes."""
    try:
        return json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_default,
        )
    except (TypeError, ValueError) as exc:
        raise StateError(f"cannot store value as JSON: {exc}") from exc


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_no_secrets(value: object, what: str, path: str = "") -> None:
    """Refuse mappings whose keys name credentials, anywhere in *value*."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key).lower()
            where = f"{path}.{key}" if path else str(key)
            if name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES):
                raise StateError(
                    f"{what} contains {where!r}, which looks like a credential; the state "
                    "database is never given secrets: leave it out or store a reference"
                )
            check_no_secrets(item, what, where)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_no_secrets(item, what, f"{path}[{index}]")


def dumps_dict(value: Mapping[str, Any] | None, what: str) -> str:
    """Canonical JSON text of a dict (None = {}), after the secrets check."""
    data: Mapping[str, Any] = value if value is not None else {}
    if not isinstance(data, Mapping):
        raise StateError(f"{what} must be a dict, not {type(data).__name__}")
    check_no_secrets(data, what)
    return canonical_json(dict(data))


def loads_dict(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
