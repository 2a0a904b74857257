"""KnotProvider's mapping of (active, published) onto Knot's key timers, without Knot.

Knot checks ``publish <= active <= retire <= remove`` (0 = never) on every ``keymgr set``;
the lab tests run these transitions against real keymgr."""

from __future__ import annotations

import itertools

import pytest

from providers.knot.timers import KnotKey, timer_changes

NOW = 1_800_000_000
PAST = NOW - 100
FUTURE = NOW + 100
NEVER = 0
STATES = [(False, False), (False, True), (True, True)]  # (active, published)


def key(publish: int = 0, active: int = 0, retire: int = 0, remove: int = 0) -> KnotKey:
    timers = dict.fromkeys(
        (
            "publish",
            "ready",
            "active",
            "retire-active",
            "retire",
            "post-active",
            "revoke",
            "remove",
        ),
        0,
    )
    timers.update(publish=publish, active=active, retire=retire, remove=remove)
    return KnotKey("a" * 40, 1, 13, False, True, timers)


def apply(k: KnotKey, changes: dict[str, str]) -> KnotKey:
    timers = dict(k.timers)
    for name, value in changes.items():
        timers[name] = NOW if value == "+0" else int(value)
    return KnotKey(k.id, k.tag, k.algorithm, k.ksk, k.zsk, timers)


def ordered(k: KnotKey) -> bool:
    inf = float("inf")
    seq = [k.timers[t] or inf for t in ("publish", "active", "retire", "remove")]
    return all(a <= b for a, b in itertools.pairwise(seq))


START = [
    key(),  # dormant
    key(publish=PAST),  # pre-published
    key(publish=PAST, active=FUTURE),  # pre-published, activation pending
    key(publish=PAST, active=PAST),  # signing
    key(publish=PAST, active=PAST, retire=FUTURE, remove=FUTURE),  # pregenerated
    key(publish=PAST, active=PAST, retire=PAST),  # retired, still published
    key(publish=PAST, active=PAST, retire=PAST, remove=PAST),  # removed
    key(publish=FUTURE, active=FUTURE),  # all in the future
]


@pytest.mark.parametrize("start", START)
@pytest.mark.parametrize(("active", "published"), STATES)
def test_every_transition_reaches_the_state_and_stays(
    start: KnotKey, active: bool, published: bool
) -> None:
    assert ordered(start)
    after = apply(start, timer_changes(start, NOW, active=active, published=published))
    assert ordered(after), after.timers  # keymgr's semantic check would pass
    assert after.active_at(NOW) is active and after.published_at(NOW) is published
    # nothing pending that would change the state later
    later = NOW + 10**9
    assert after.active_at(later) is active and after.published_at(later) is published
    # idempotent
    assert timer_changes(after, NOW, active=active, published=published) == {}
