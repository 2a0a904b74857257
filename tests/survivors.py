"""Which processes started by the tests still run: every lab server, scanner, daemon and
CLI the tests start has its temp dir on its command line, so the suites check after
themselves that nothing naming their base temp dir survived."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def survivors(base: str, names: Sequence[str] = ()) -> list[str]:
    """``PID: command line`` of live (not zombie) processes whose command line contains
    ``base`` -- and, if ``names`` is given, one of them."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] in "ZX":
            continue
        if base in cmd and (not names or any(n in cmd for n in names)):
            left.append(f"{entry.name}: {cmd}")
    return left
