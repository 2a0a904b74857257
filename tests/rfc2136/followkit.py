"""Following Knot's own ZSK rollovers under the daemon: the setup and the stopwatch shared
by tests/rfc2136/test_follow_knot.py and bench/bench_follow.py.

Knot (``type = "rfc2136"``) rolls its ZSK by itself every ``zsk-lifetime`` (RFC 7583
pre-publication): it publishes the successor, signs with it ``dnskey-ttl`` +
``propagation-delay`` later (its pre-publication window) and drops the predecessor
``zone-max-ttl`` + ``propagation-delay`` after that. Two PowerDNS providers sign beside
it. The ``Stopwatch`` asks every nameserver directly, every 0.1 s, which DNSKEYs it
serves and which ZSK Knot signs its SOA with, and from that tells for every successor
when it appeared at Knot, when every other provider served it, and when Knot started
signing with it; and for every predecessor when Knot and when the others dropped it.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
from knot2 import KnotSigner, add_to_config, provider_block
from rollover.rollkit import cli, ok

from core.keys import Key
from multisigner_lab import Lab, zones

ZONE = "follow.test."
SIGNER = "u0"
PROPAGATION = 8  # Knot's propagation-delay, seconds


def knot_policy(zsk_lifetime: int) -> str:
    return (f"    zsk-lifetime: {zsk_lifetime}s\n"
            f"    propagation-delay: {PROPAGATION}s\n")


def window(lab: Lab) -> int:
    """Knot's pre-publication window: dnskey-ttl + propagation-delay."""
    return lab.ttl + PROPAGATION


@contextmanager
def follow_lab(directory: Path, zsk_lifetime: int, names: tuple[str, ...] = (ZONE,)
               ) -> Iterator[tuple[Lab, KnotSigner, Path]]:
    """Two PowerDNS providers and a Knot rolling its ZSK every ``zsk_lifetime`` s, all
    signing ``names``, not synced yet; the config (with Knot's window) for the daemon."""
    lab = Lab.start(directory / "lab", providers=2, zones=list(names))
    knot: KnotSigner | None = None
    try:
        ns_names = [zones.ns_name(p.name) for p in lab.providers]
        knot = KnotSigner.make(SIGNER, directory / SIGNER, list(names), ns_names, lab.ttl,
                               policy_extra=knot_policy(zsk_lifetime))
        knot.start()
        for name in names:
            knot.wait_signed(name)
        block = provider_block(knot, SIGNER, secret_var="U0_TSIG").replace(
            "[[providers]]\n", f'[[providers]]\nprepublish_window = "{window(lab)}s"\n', 1)
        config = directory / "multisigner.toml"
        config.write_text(add_to_config(lab.config_path.read_text(), block, SIGNER))
        config.chmod(0o600)
        yield lab, knot, config
    finally:
        if knot is not None:
            knot.stop()
        lab.stop()


def sync(config: Path) -> None:
    out = ok(cli(config, "sync", ZONE)).out
    assert f"{ZONE}: synced" in out or "in sync" in out, out


def _ask(where: tuple[str, int], rdtype: str) -> dns.message.Message | None:
    query = dns.message.make_query(ZONE, rdtype, want_dnssec=True)
    try:
        return dns.query.tcp(query, where[0], port=where[1], timeout=1)
    except (OSError, dns.exception.DNSException):
        return None


@dataclass
class Roll:
    key: Key
    published: float  # first served at Knot
    everywhere: float | None = None  # first served by every other provider
    signing: float | None = None  # Knot's SOA first signed with it

    @property
    def latency(self) -> float | None:
        return None if self.everywhere is None else self.everywhere - self.published

    @property
    def lead(self) -> float | None:
        """How long before Knot signed with it every other provider served it."""
        if self.everywhere is None or self.signing is None:
            return None
        return self.signing - self.everywhere


@dataclass
class Stopwatch:
    knot: tuple[str, int]
    others: dict[str, tuple[str, int]]
    rolls: dict[Key, Roll] = field(default_factory=dict)
    retired: dict[Key, list[float | None]] = field(default_factory=dict)  # [at Knot, all]
    errors: int = 0
    _initial: frozenset[Key] = frozenset()
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Stopwatch:
        self._initial = frozenset(self._keys(self.knot) or ())
        self._thread = threading.Thread(target=self._run, daemon=True, name="stopwatch")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def done(self) -> list[Roll]:
        """Successors Knot signed with and every other provider served."""
        return [r for r in self.rolls.values() if r.signing is not None and r.everywhere]

    def _keys(self, where: tuple[str, int]) -> set[Key] | None:
        resp = _ask(where, "DNSKEY")
        if resp is None:
            return None
        return {Key.from_rdata(rd) for rr in resp.answer if rr.rdtype == dns.rdatatype.DNSKEY
                for rd in rr}

    def _soa_signer(self) -> int | None:
        resp = _ask(self.knot, "SOA")
        tags = [rd.key_tag for rr in resp.answer if rr.rdtype == dns.rdatatype.RRSIG
                for rd in rr] if resp is not None else []
        return tags[0] if tags else None

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = time.time()
            at_knot = self._keys(self.knot)
            elsewhere = [self._keys(ep) for ep in self.others.values()]
            tag = self._soa_signer()
            if at_knot is None or any(s is None for s in elsewhere):
                self.errors += 1
                continue
            self._tick(now, at_knot, [s for s in elsewhere if s is not None], tag)

    def _tick(self, now: float, at_knot: set[Key], elsewhere: list[set[Key]],
              tag: int | None) -> None:
        for key in at_knot - self._initial:
            if key.flags != 256:
                continue
            roll = self.rolls.setdefault(key, Roll(key, now))
            if roll.everywhere is None and all(key in s for s in elsewhere):
                roll.everywhere = now
            if roll.signing is None and tag == key.key_tag:
                roll.signing = now
        for key in list(self.rolls) + list(self._initial):
            if key.flags != 256 or key in at_knot:
                continue
            gone = self.retired.setdefault(key, [now, None])
            if gone[1] is None and not any(key in s for s in elsewhere):
                gone[1] = now


def figures(rolls: list[Roll], retired: dict[Key, list[float | None]],
            window_s: int) -> dict[str, float]:
    lat = [r.latency for r in rolls if r.latency is not None]
    lead = [r.lead for r in rolls if r.lead is not None]
    withdraw = [g[1] - g[0] for g in retired.values() if g[0] is not None and g[1] is not None]
    return {
        "rolls": len(lat),
        "latency_median_s": statistics.median(lat) if lat else float("nan"),
        "latency_max_s": max(lat, default=float("nan")),
        "lead_min_s": min(lead, default=float("nan")),
        "window_s": window_s,
        "withdrawals": len(withdraw),
        "withdraw_median_s": statistics.median(withdraw) if withdraw else float("nan"),
    }
