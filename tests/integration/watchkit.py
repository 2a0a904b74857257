"""The cache-modelling invariant watcher (tests/rollover/watcher.py) around the sync and
repair tests: while a ``with Watching(lab, zone, [...])`` block runs, every nameserver of
the watched providers and the parent are polled, and every combination of DS, DNSKEY and
data RRsets a resolver may hold must validate.

Several of these tests start from a zone that is deliberately not valid everywhere: the
lab's "single-signed at p0, the others added but not yet synchronised" (p1.. serve the
zone with their own keys only, so their answers chain to no DS), or a zone an operator
broke behind the controller's back. There the invariant cannot hold from the first
instant, and the tests say what it means instead: the providers whose answers are valid
at the start are watched through the process (sync must never break them), or every
breach must be one the starting state explains (:meth:`Watching.assert_clean` with
``accepted``), and none may be the process's own."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from itkit import nameservers
from rollover.watcher import Breach, Watcher

from multisigner_lab import Lab

SERVED_BY = re.compile(r"served by (\S+) ")


def cached_from_only(breach: Breach, providers: set[str]) -> bool:
    """Whether the RRset the failing one is checked against was served by ``providers``
    and nobody else."""
    return set(SERVED_BY.findall(breach.cached_from)) <= providers


class Watching:
    """The watcher over ``zone`` at ``providers`` (default: every provider) and the
    parent, for a ``with`` block; check with :meth:`assert_clean` after it."""

    def __init__(self, lab: Lab, zone: str, providers: Sequence[str] | None = None) -> None:
        servers = nameservers(lab)
        if providers is not None:
            servers = {p: servers[p] for p in providers}
        self.watcher = Watcher(zone, servers, [(lab.parent.address, lab.parent.dns_port)])
        self.breaches: list[Breach] = []
        self.rounds = 0

    def __enter__(self) -> Watching:
        self.watcher.start()
        self.watcher.wait_rounds(2)  # the starting state is in the cache model
        return self

    def __exit__(self, *exc: object) -> None:
        self.watcher.wait_rounds(2)  # and what the block left is, too
        self.breaches, self.rounds = self.watcher.stop()
        print(f"watcher {self.watcher.zone}: {self.watcher.summary()}")

    def assert_clean(self, accepted: Callable[[Breach], bool] | None = None) -> list[Breach]:
        """No breach (but those ``accepted`` names: the starting state's), no query error,
        enough rounds to mean something. Returns the accepted breaches."""
        assert self.rounds >= 4, self.watcher.summary()
        allowed = [b for b in self.breaches if accepted is not None and accepted(b)]
        other = [b for b in self.breaches if b not in allowed]
        assert not other, "invariant breaches:\n" + "\n".join(str(b) for b in other[:20])
        assert not self.watcher.errors, "watcher query errors:\n" + "\n".join(
            self.watcher.errors[:20])
        return allowed
