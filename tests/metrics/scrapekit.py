"""Scraping a daemon's metrics endpoint in tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from rollover.rollkit import MULTISIGNER, REPO

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def fetch(base: str, path: str) -> tuple[int, str]:
    """GET ``base + path``: status and body (an HTTP error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(base + path, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> Samples:
    status, text = fetch(base, "/metrics")
    assert status == 200, text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def present(samples: Samples, name: str, **labels: str) -> bool:
    want = set(labels.items())
    return any(n == name and want <= lab for (n, lab) in samples)


def until(what: str, check: Callable[[], bool], timeout: float, *,
          interval: float = 0.5) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what}")


def reachable(base: str) -> bool:
    try:
        return fetch(base, "/healthz")[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def json_daemon(config: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``multisigner --log-format json run ARGS`` as a real process (rollkit's ``daemon``
    with JSON logs); always killed (and reaped) on exit."""
    with log.open("ab") as out:
        p = subprocess.Popen([str(MULTISIGNER), "--config", str(config), "--log-format",
                              "json", "run", *args], stdout=out, stderr=subprocess.STDOUT,
                             cwd=REPO, env=dict(os.environ))
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
