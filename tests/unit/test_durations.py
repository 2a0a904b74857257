"""core.durations: the duration strings of the config (docs/configuration.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("2s", timedelta(seconds=2)),
        ("5m", timedelta(minutes=5)),
        ("12h", timedelta(hours=12)),
        ("90d", timedelta(days=90)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1m30s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        (" 5M ", timedelta(minutes=5)),  # surrounding blanks and upper case are tolerated
    ],
)
def test_parse_accepted_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_ms_is_not_read_as_minutes() -> None:
    # "5ms" must not be "5m" followed by garbage, nor 5 minutes.
    assert parse_duration("5ms") == timedelta(milliseconds=5)
    assert parse_duration("5m") == timedelta(minutes=5)


def test_empty_duration_error_says_empty_and_shows_forms() -> None:
    with pytest.raises(ValueError, match=r"^empty duration; write e\.g\. '500ms'"):
        parse_duration("")
    with pytest.raises(ValueError, match="empty duration"):
        parse_duration("   ")


@pytest.mark.parametrize("text", ["5x", "m5", "-1s", "5", "1h 30m", "1e3s", ".5s", "5s5", "h"])
def test_parse_rejects_with_the_text_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert message.startswith(f"cannot read {text!r} as a duration")
    assert "'500ms', '2s', '5m', '12h' or '90d'" in message


@given(st.integers(min_value=0, max_value=10**8))
def test_integer_seconds_round_trip(seconds: int) -> None:
    assert parse_duration(f"{seconds}s") == timedelta(seconds=seconds)


@given(st.integers(min_value=0, max_value=3599))
def test_format_then_parse_is_exact_below_one_hour(seconds: int) -> None:
    # Below an hour format_duration keeps every second ("59m59s"), so parsing it back is exact.
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


@given(st.integers(min_value=0, max_value=10**7))
def test_format_then_parse_is_within_display_precision(seconds: int) -> None:
    # Above an hour only whole minutes (below 48 h) or whole hours are shown, truncated:
    # the text never overstates a wait and is short by less than one displayed unit.
    delta = timedelta(seconds=seconds)
    back = parse_duration(format_duration(delta))
    unit = 1 if seconds < 3600 else 60 if seconds < 48 * 3600 else 3600
    assert 0 <= (delta - back).total_seconds() < unit


@given(st.integers(min_value=0, max_value=59), st.integers(min_value=0, max_value=23),
       st.integers(min_value=0, max_value=59))
def test_compound_forms_add_up(h: int, m: int, s: int) -> None:
    assert parse_duration(f"{h}h{m}m{s}s") == timedelta(hours=h, minutes=m, seconds=s)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=3.5), "3.5s"),
        (timedelta(seconds=42), "42s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(minutes=59, seconds=59), "59m59s"),
        (timedelta(hours=1, minutes=2), "1h02m"),
        (timedelta(hours=47, minutes=59), "47h59m"),
        (timedelta(hours=48), "2d00h"),
        (timedelta(days=90, hours=5), "90d05h"),
        (timedelta(seconds=-5), "-5s"),
        (timedelta(minutes=-90), "-1h30m"),
    ],
)
def test_format_duration_examples(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
