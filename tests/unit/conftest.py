"""Shared fixtures of the unit tests (signed zone data lives in ``signing.py``)."""

from __future__ import annotations

import pytest
from signing import SimProvider, make_provider

from core.config import PolicyConfig


@pytest.fixture
def providers3() -> list[SimProvider]:
    """Three simulated Model 2 signers p0, p1, p2, each with its own ECDSA KSK and ZSK."""
    return [make_provider(i) for i in range(3)]


@pytest.fixture
def policy() -> PolicyConfig:
    return PolicyConfig()
