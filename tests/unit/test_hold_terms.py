"""Negative controls of ``rollkit.check_exact_holds``, the check the real-server rollovers
on labs with distinct TTLs (DNSKEY 3 s, data 7 s, DS 5 s) apply to the product's
history: fed a recorded history whose hold used the wrong TTL term, it must fail, also
where the wrong term is the longer one (which breaks nothing, so the cache-modelling
watcher cannot see it: tests/unit/test_watcher.py, "wrong term")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rollover.rollkit import check_exact_holds

TTLS = {"TTLkey": 3, "TTLsig": 7, "TTLds": 5}
MEASURED = {"key": 3, "sig": 7, "ds": 5, "ns": 7}
MARGIN = 1.0  # propagation_delay 0 s + safety_margin 1 s, as in the lab's policy
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def hold(step: str, terms: list[str], seconds: float, *, at: float = 0.0,
         measured: dict[str, int] | None = None) -> dict[str, Any]:
    """One recorded transition into ``STEP:hold`` lasting ``seconds`` (+ margin if any
    term), as the runner writes its evidence."""
    observed = T0 + timedelta(seconds=at)
    length = seconds + (MARGIN if terms else 0.0)
    return {"to_state": f"{step}:hold", "at": observed.isoformat(),
            "evidence": {"hold": terms, "hold_combine": "sum",
                         "ttls": measured or MEASURED,
                         "propagation_delay_s": 0.0, "safety_margin_s": MARGIN,
                         "observed_at": observed.isoformat(),
                         "deadline": (observed + timedelta(seconds=length)).isoformat()}}


def zsk_history(activate_terms: list[str], activate_seconds: float,
                publish_terms: tuple[list[str], float] = (["TTLkey"], 3)) -> list[dict[str, Any]]:
    return [{"to_state": "publish:act", "at": T0.isoformat(), "evidence": {}},
            hold("publish", publish_terms[0], publish_terms[1]),
            hold("activate", activate_terms, activate_seconds, at=10),
            hold("withdraw", [], 0, at=30),
            {"to_state": "done", "at": (T0 + timedelta(seconds=31)).isoformat(),
             "evidence": {}}]


def test_the_right_terms_pass() -> None:
    held = check_exact_holds(zsk_history(["TTLsig"], 7), "zsk", TTLS)
    assert held == {"publish": 4.0, "activate": 8.0, "withdraw": 0.0}


def test_activate_held_for_ttlkey_instead_of_ttlsig_fails() -> None:
    with pytest.raises(AssertionError, match="activate:hold: hold terms"):
        check_exact_holds(zsk_history(["TTLkey"], 3), "zsk", TTLS)


def test_right_term_name_but_wrong_length_fails() -> None:
    """The evidence names TTLsig, but the deadline was computed from TTLkey."""
    with pytest.raises(AssertionError, match=r"activate:hold: held 4\.0 s"):
        check_exact_holds(zsk_history(["TTLsig"], 3), "zsk", TTLS)


def test_publish_held_for_the_longer_wrong_term_fails() -> None:
    with pytest.raises(AssertionError, match="publish:hold: hold terms"):
        check_exact_holds(zsk_history(["TTLsig"], 7, (["TTLsig"], 7)), "zsk", TTLS)


def test_measured_ttl_other_than_the_labs_fails() -> None:
    """A product that measured TTLsig as the DNSKEY TTL (3 s) would hold 3 s and name the
    right term: the measured TTLs must be exactly the lab's."""
    history = zsk_history(["TTLsig"], 3)
    for e in history:
        if e["to_state"].endswith(":hold"):
            e["evidence"]["ttls"] = {**MEASURED, "sig": 3}
    with pytest.raises(AssertionError, match="measured TTLs"):
        check_exact_holds(history, "zsk", TTLS)
