"""Knot's key timers, pure: a key as ``keymgr -j list`` reports it, and the timer changes
that take it to a wanted (active, published) state.

Knot's timers are unix seconds, 0 = unset (= never); ``keymgr set`` refuses any change
breaking ``publish <= active <= retire <= remove`` (0 counting as infinity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dns.dnssec

from core.keys import Key, Role

TIMERS = ("publish", "ready", "active", "retire-active", "retire", "post-active", "revoke",
          "remove")
_SEP, _REVOKE = 0x0001, 0x0080  # DNSKEY flags (RFC 4034 sec. 2.1.1, RFC 5011 sec. 7)


@dataclass(frozen=True)
class KnotKey:
    """One key of a zone in Knot's KASP database, timers as ``keymgr -j list`` reports
    them (unix seconds, 0 = unset)."""

    id: str
    tag: int
    algorithm: int
    ksk: bool
    zsk: bool
    timers: Mapping[str, int]

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> KnotKey:
        return cls(
            id=str(item["id"]),
            tag=int(item["tag"]),
            algorithm=int(item["algorithm"]),
            ksk=bool(item["ksk"]),
            zsk=bool(item["zsk"]),
            timers={name: int(item.get(name) or 0) for name in TIMERS},
        )

    def reached(self, timer: str, at: float) -> bool:
        value = self.timers.get(timer, 0)
        return value != 0 and value <= at

    def published_at(self, at: float) -> bool:
        return self.reached("publish", at) and not self.reached("remove", at)

    def active_at(self, at: float) -> bool:
        return (
            self.reached("active", at)
            and not self.reached("retire", at)
            and not self.reached("remove", at)
        )

    @property
    def role(self) -> Role:
        if self.ksk and self.zsk:
            return "csk"
        return "ksk" if self.ksk else "zsk"

    @property
    def label(self) -> str:
        return f"{self.tag}/{dns.dnssec.algorithm_to_text(self.algorithm)} (id {self.id})"


def timer_changes(key: KnotKey, now: float, *, active: bool, published: bool) -> dict[str, str]:
    """keymgr ``set`` arguments taking ``key`` to the wanted state from now on (empty:
    already there; active-but-unpublished is refused by the callers).

    Knot insists on ``publish <= active <= retire <= remove`` with 0 = never (keymgr: "timestamp
    'active' must be before 'retire'"), so a key that never signed is unpublished by unsetting
    ``publish``, and one that did is retired, then removed. Timers already passed are kept as
    history; pending ones that would leave the wanted state later are unset."""
    timers = key.timers
    ever_active = key.reached("active", now)
    want: dict[str, int | str] = {}
    if published or ever_active:
        want["publish"] = timers["publish"] if key.reached("publish", now) else "+0"
    else:
        want["publish"] = 0
    if active:
        want["active"] = timers["active"] if ever_active else "+0"
        if want["publish"] == "+0":
            want["active"] = "+0"  # (a key signing while unpublished) both from now
        want["retire"] = want["remove"] = 0
    elif ever_active:
        want["active"] = timers["active"]
        want["retire"] = timers["retire"] if key.reached("retire", now) else "+0"
        if published:
            want["remove"] = 0
        else:
            want["remove"] = timers["remove"] if key.reached("remove", now) else "+0"
    else:
        want["active"] = want["retire"] = want["remove"] = 0
    return {t: str(v) for t, v in want.items() if v != timers.get(t, 0)}


def signs_during(key: KnotKey, start: int, until: int | None) -> bool:
    """Whether the ZSK signs at any time in [start, until)."""
    if not key.zsk:
        return False
    act = key.timers.get("active", 0)
    if act == 0 or (until is not None and act >= until):
        return False
    end = min(
        (v for v in (key.timers.get("retire", 0), key.timers.get("remove", 0)) if v),
        default=None,
    )
    return end is None or end > start


def flags_match(public: Key, key: KnotKey, now: float) -> bool:
    """Whether a DNSKEY's KSK and revoke bits are what Knot's key says now."""
    flags = public.flags
    return (bool(flags & _SEP) == key.ksk
            and bool(flags & _REVOKE) == key.reached("revoke", now))
