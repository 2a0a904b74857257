"""``multisigner`` command line (docs/cli.md): parse, dispatch to the command modules,
turn errors into exit codes.

Exit codes: 0 done; 1 refused or failed (reason on stderr, nothing half-applied);
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from core.config import find_config_path
from core.errors import ConfigError, MultisignerError
from orchestrator import logs
from orchestrator.acme_commands import cmd_acme
from orchestrator.agent_commands import cmd_parent_agent
from orchestrator.audit_commands import run_audit
from orchestrator.cli_common import (
    ZONE_CONCURRENCY,
    config_of,
    err,
    out,
    run_with,
    zones_of,
)
from orchestrator.cli_parser import build_parser
from orchestrator.process_commands import cmd_rollover, cmd_run, cmd_signer, cmd_step
from orchestrator.runtime import Runtime
from orchestrator.zone_commands import cmd_check, cmd_history, cmd_status, cmd_sync, cmd_verify


def cmd_ksk(args: argparse.Namespace) -> int:
    from orchestrator.ksk_commands import ksk_init

    config = config_of(args)
    zone = zones_of(config, args.zone, False)[0]

    async def body(rt: Runtime) -> int:
        for line in (await ksk_init(rt, zone)).lines():
            out(line)
        return 0

    return run_with(config, body)


def cmd_audit(args: argparse.Namespace) -> int:
    return run_audit(args, config_of(args), find_config_path(args.config))


def cmd_lab(args: argparse.Namespace) -> int:
    from multisigner_lab.cli import lab_down, lab_info, lab_up

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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sync": cmd_sync,
    "verify": cmd_verify,
    "status": cmd_status,
    "check": cmd_check,
    "history": cmd_history,
    "rollover": cmd_rollover,
    "step": cmd_step,
    "ksk": cmd_ksk,
    "signer": cmd_signer,
    "run": cmd_run,
    "audit": cmd_audit,
    "lab": cmd_lab,
    "acme": cmd_acme,
    "parent-agent": cmd_parent_agent,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_format, args.verbose)
    if argv is None and hasattr(signal, "SIGUSR1"):
        # `kill -USR1 PID` prints every thread's stack to stderr: where a controller that
        # seems stuck is, without stopping it (the console script only, not when embedded)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        err(f"configuration error: {exc}")
        return exc.exit_code
    except MultisignerError as exc:
        err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["COMMANDS", "ZONE_CONCURRENCY", "main"]
