"""Durations as operators write them: ``"500ms"``, ``"2s"``, ``"5m"``, ``"12h"``, ``"90d"``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
# Compound forms ("1h30m") are accepted because operators write them that way.
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ValueError with the accepted forms on anything else."""
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration; write e.g. '500ms', '2s', '5m', '12h' or '90d'")
    pos = 0
    total = timedelta()
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(
            f"cannot read {text!r} as a duration; write e.g. '500ms', '2s', '5m', '12h' or '90d'"
        )
    return total


def format_duration(delta: timedelta) -> str:
    """Render a duration compactly for progress lines and docs (``1h02m``, ``3.5s``)."""
    seconds = delta.total_seconds()
    if seconds < 0:
        return "-" + format_duration(-delta)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds % 1 else f"{int(seconds)}s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
