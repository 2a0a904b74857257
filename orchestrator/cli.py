"""``multisigner`` command line (docs/cli.md): parse, dispatch to the command modules,
turn errors into exit codes.

Exit codes: 0 done; 1 refused or failed (reason on stderr, nothing half-applied);
2 usage or configuration error.

Start-up time matters (an ACME hook or a monitoring probe runs a command per call): this
module and the parser import nothing beyond the standard library and core.errors. A
command's module, and with it pydantic, SQLAlchemy, httpx, dnspython or cryptography, is
imported only once that command is chosen (``COMMANDS`` names modules, not functions);
tests/unit/test_cli_imports.py checks it and bench/bench_cli_start.py measures it.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from core.errors import ConfigError, MultisignerError
from orchestrator import logs
from orchestrator.cli_parser import build_parser


def __getattr__(name: str) -> Any:
    # kept for callers of ``cli.ZONE_CONCURRENCY`` (the benchmarks) without importing the
    # command machinery at start-up
    if name == "ZONE_CONCURRENCY":
        from orchestrator.cli_common import ZONE_CONCURRENCY

        return ZONE_CONCURRENCY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cmd_ksk(args: argparse.Namespace) -> int:
    from orchestrator.cli_common import config_of, out, run_with, zones_of
    from orchestrator.ksk_commands import ksk_init
    from orchestrator.runtime import Runtime

    config = config_of(args)
    zone = zones_of(config, args.zone, False)[0]

    async def body(rt: Runtime) -> int:
        for line in (await ksk_init(rt, zone)).lines():
            out(line)
        return 0

    return run_with(config, body)


def cmd_audit(args: argparse.Namespace) -> int:
    from core.config import find_config_path
    from orchestrator.audit_commands import run_audit
    from orchestrator.cli_common import config_of

    return run_audit(args, config_of(args), find_config_path(args.config))


def cmd_lab(args: argparse.Namespace) -> int:
    from multisigner_lab.cli import lab_down, lab_info, lab_up
    from orchestrator.cli_common import out

    directory = Path(args.dir).resolve()
    if args.action == "up":
        zones = ["example.test."] if args.zones == 1 else [
            f"z{i:04d}.test." for i in range(args.zones)]
        delegated = ([n.strip() for n in args.delegated.split(",") if n.strip()]
                     if args.delegated else None)
        lab = lab_up(directory, providers=args.providers, zones=zones, ttl=args.ttl,
                     model=args.model, delegated=delegated)
        out(f"lab running in {directory}")
        out(f"config: {lab.config_path}")
        out(f"try:    multisigner --config {lab.config_path} status")
        out(f"stop:   multisigner lab down --dir {directory}")
    elif args.action == "down":
        lab_down(directory)
        out(f"lab in {directory} stopped")
    else:
        out(json.dumps(lab_info(directory), indent=2))
    return 0


# command -> (module, function): imported when the command runs (module docstring)
COMMANDS: dict[str, tuple[str, str]] = {
    "sync": ("orchestrator.zone_commands", "cmd_sync"),
    "verify": ("orchestrator.zone_commands", "cmd_verify"),
    "status": ("orchestrator.zone_commands", "cmd_status"),
    "check": ("orchestrator.zone_commands", "cmd_check"),
    "history": ("orchestrator.zone_commands", "cmd_history"),
    "rollover": ("orchestrator.process_commands", "cmd_rollover"),
    "step": ("orchestrator.process_commands", "cmd_step"),
    "ksk": (__name__, "cmd_ksk"),
    "signer": ("orchestrator.process_commands", "cmd_signer"),
    "run": ("orchestrator.process_commands", "cmd_run"),
    "audit": (__name__, "cmd_audit"),
    "lab": (__name__, "cmd_lab"),
    "acme": ("orchestrator.acme_commands", "cmd_acme"),
    "parent-agent": ("orchestrator.agent_commands", "cmd_parent_agent"),
}


def command(name: str) -> Callable[[argparse.Namespace], int]:
    """The function running command *name*, its module imported now."""
    module, function = COMMANDS[name]
    return cast(Callable[[argparse.Namespace], int],
                getattr(importlib.import_module(module), function))


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_format, args.verbose)
    if argv is None and hasattr(signal, "SIGUSR1"):
        # `kill -USR1 PID` prints every thread's stack to stderr: where a controller that
        # seems stuck is, without stopping it (the console script only, not when embedded)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return command(args.command)(args)
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return exc.exit_code
    except MultisignerError as exc:
        _err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["COMMANDS", "command", "main"]
