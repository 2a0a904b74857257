"""How long does a ``multisigner`` command take to start, against floors measured in the
same run?

Every figure is the median (and the minimum) of ``--runs`` spawns of a fresh interpreter,
the runs of all commands and floors interleaved, so a load change on a shared box hits
all of them alike. Two floors:

* ``python -c pass``: interpreter and ``site`` start-up, what any Python command pays and
  no change to multisigner can remove. ``--help`` and usage errors (argparse only, the
  command modules not imported: orchestrator/cli.py) are compared with it.
* ``python -c 'import dns.message'``: the smallest import any command that talks DNS
  needs (dnspython's message, name and rdata classes); the cost of a trivial DNS tool. A
  real command (``status ZONE``) is compared with it; that command also reads a config
  (pydantic), opens the state database (SQLAlchemy/sqlmodel) and calls every provider's
  API (httpx), so its ratio says how far the CLI is from a bare DNS tool, not a target.

``status ZONE`` runs against a lab (3 PowerDNS providers, one zone) started here and
stopped at the end (``--no-lab`` skips it). The CLI is started as the console script does
(``orchestrator.cli.main``), from the code on ``PYTHONPATH``.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_cli_start.py [--runs 15] [--json-out F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = "import sys; from orchestrator.cli import main; sys.exit(main())"
FLOORS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import dns.message'": ["-c", "import dns.message"],
}


def commands(config: Path | None) -> dict[str, tuple[list[str], str]]:
    """name -> (interpreter arguments, the floor it is compared with)."""
    pass_floor, dns_floor = FLOORS
    found: dict[str, tuple[list[str], str]] = {
        "multisigner --help": (["-c", CLI, "--help"], pass_floor),
        "multisigner rollover (usage error)": (["-c", CLI, "rollover"], pass_floor),
    }
    if config is not None:
        found["multisigner status ZONE"] = (
            ["-c", CLI, "--config", str(config), "status", "example.test."], dns_floor)
    return found


def spawn(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=REPO, check=False)
    return time.perf_counter() - started


def measure(config: Path | None, runs: int) -> dict[str, Any]:
    jobs = {**{name: args for name, args in FLOORS.items()},
            **{name: args for name, (args, _) in commands(config).items()}}
    for args in jobs.values():
        spawn(args)  # warm the page cache and the .pyc files: not part of the figure
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(runs):
        for name, args in jobs.items():
            times[name].append(spawn(args))
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "runs": len(t)}
            for name, t in times.items()}


def report(figures: dict[str, Any], config: Path | None) -> None:
    print(f"{'':40} {'median s':>9} {'min s':>7}  {'floor':32} {'ratio (median)':>14}")
    for name in FLOORS:
        f = figures[name]
        print(f"{name:40} {f['median_s']:9.3f} {f['min_s']:7.3f}  (floor)")
    for name, (_, floor) in commands(config).items():
        f, base = figures[name], figures[floor]
        ratio = f["median_s"] / base["median_s"]
        f["floor"], f["ratio"] = floor, ratio
        print(f"{name:40} {f['median_s']:9.3f} {f['min_s']:7.3f}  {floor:32} {ratio:14.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-lab", action="store_true", help="skip status ZONE (no lab)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.no_lab:
        figures = measure(None, args.runs)
        report(figures, None)
    else:
        from multisigner_lab import Lab

        with tempfile.TemporaryDirectory(prefix="msclistart-") as work:
            lab = Lab.start(Path(work) / "lab", 3, ["example.test."], 2, ds_ttl=2)
            try:
                figures = measure(lab.config_path, args.runs)
            finally:
                lab.stop()
            report(figures, lab.config_path)
    print(f"load at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
