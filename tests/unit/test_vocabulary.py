"""The step vocabulary: one pure check per observation and precondition name, one TTL term
per hold term, and a runbook that names anything else does not load."""

from __future__ import annotations

import tomllib
from typing import get_args

import pytest
from pydantic import ValidationError

from orchestrator.decide import checks
from orchestrator.decide.timing import Ttls
from runbooks import (
    OBSERVATIONS,
    PRECONDITIONS,
    TERMS,
    KeyTarget,
    Observation,
    Precondition,
    Runbook,
    TtlTerm,
    all_runbooks,
)

GOOD = """
kind = "probe"
model = 2
title = "t"
summary = "s"
[[steps]]
id = "one"
title = "one"
keys = { new = "published" }
precondition = ["old-unused"]
observe = ["served"]
hold = ["TTLkey"]
"""


def test_every_name_has_exactly_one_check() -> None:
    assert set(checks.OBSERVATIONS) == set(get_args(Observation)) == set(OBSERVATIONS)
    assert set(checks.PRECONDITIONS) == set(get_args(Precondition)) == set(PRECONDITIONS)
    assert set(get_args(TtlTerm)) == set(TERMS)
    ttls = Ttls(key=1, sig=2, ds=3, ns=4)
    assert sorted(ttls.term(t) for t in get_args(TtlTerm)) == [1, 2, 3, 4]


def test_every_shipped_runbook_loads_and_covers_both_models() -> None:
    books = all_runbooks()
    kinds = {b.kind for b in books.values()}
    assert {"sync", "zsk-rollover", "ksk-rollover", "signer-add", "signer-remove"} <= kinds
    for kind in ("sync", "zsk-rollover", "ksk-rollover", "signer-add", "signer-remove"):
        assert f"{kind}/model1" in books and f"{kind}/model2" in books, kind
    for book in books.values():
        for step in (*book.steps, *book.abort):
            assert set(step.observe) <= set(checks.OBSERVATIONS), (book.kind, step.id)


def test_the_probe_runbook_loads() -> None:
    book = Runbook.model_validate(tomllib.loads(GOOD))
    assert book.steps[0].observe == ["served"]


@pytest.mark.parametrize(("old", "new", "field"), [
    ('observe = ["served"]', 'observe = ["servd"]', "observe"),
    ('precondition = ["old-unused"]', 'precondition = ["old-unsued"]', "precondition"),
    ('hold = ["TTLkey"]', 'hold = ["TTLkeys"]', "hold"),
    ('keys = { new = "published" }', 'keys = { new = "publish" }', "keys"),
    ('title = "one"', 'title = "one"\nwait = "5s"', "wait"),
])
def test_a_runbook_naming_anything_unknown_fails_to_load(old: str, new: str,
                                                         field: str) -> None:
    assert old in GOOD
    with pytest.raises(ValidationError) as err:
        Runbook.model_validate(tomllib.loads(GOOD.replace(old, new, 1)))
    assert field in str(err.value)


def test_key_states_are_the_documented_three() -> None:
    assert set(get_args(KeyTarget)) == {"published", "active", "removed"}
