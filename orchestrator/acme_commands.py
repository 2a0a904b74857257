"""``multisigner acme ...``: ACME DNS-01 and dns-persist-01 at every signer, and the hooks
ACME clients call (certbot's manual hooks, lego's exec provider). Parsing and rendering
only; the work is in orchestrator/acme/."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from core.errors import UsageError
from orchestrator import logs
from orchestrator.runtime import Runtime


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise UsageError(f"{name} is not set: 'acme certbot-auth'/'certbot-cleanup' are run "
                         "by certbot as --manual-auth-hook/--manual-cleanup-hook")
    return value


def _report(line: str) -> None:
    logs.progress(line)


def cmd_acme(args: argparse.Namespace) -> int:
    from orchestrator.cli_common import config_of as _config
    from orchestrator.cli_common import run_with as _run

    config = _config(args)

    async def body(rt: Runtime) -> int:
        result = await _dispatch(rt, args)
        if args.json:
            print(json.dumps(result, indent=2), flush=True)
        else:
            print(_text(result), flush=True)
        return 0

    return _run(config, body)


async def _dispatch(rt: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    from orchestrator.acme.dns01 import cleanup, publish
    from orchestrator.acme.persist import persist
    from orchestrator.decide.acme import CHALLENGE_LABEL

    action = args.acme_action
    fqdn, value = getattr(args, "fqdn", None), getattr(args, "value", None)
    if action in ("certbot-auth", "certbot-cleanup"):
        fqdn, value = _env("CERTBOT_DOMAIN"), _env("CERTBOT_VALIDATION")
    # lego's exec provider passes the TXT record's owner name (a CNAME at the challenge
    # name already followed), never the domain being validated: taken as is
    label: str | None = CHALLENGE_LABEL
    if action == "lego":
        action = "publish" if args.lego_action == "present" else "cleanup"
        label = None
    assert fqdn is not None
    timeout = getattr(args, "timeout", None)
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be positive")
    if action == "persist":
        return await persist(rt, fqdn, issuer=args.issuer, account_uri=args.account_uri,
                             wildcard=args.wildcard, until=args.persist_until,
                             remove=args.remove, wait=args.wait, timeout=timeout,
                             ttl=args.ttl, report=_report, resolver=args.resolver)
    if action in ("cleanup", "certbot-cleanup"):
        return (await cleanup(rt, fqdn, value, report=_report, resolver=args.resolver,
                              label=label)).as_json()
    assert value is not None
    # every hook waits: the ACME client asks the CA to validate as soon as it returns
    wait = bool(getattr(args, "wait", False)) or args.acme_action in ("certbot-auth", "lego")
    result = await publish(rt, fqdn, value, wait=wait, timeout=timeout, ttl=args.ttl,
                           report=_report, resolver=args.resolver, label=label)
    return result.as_json()


def _text(result: dict[str, Any]) -> str:
    where = " -> ".join(result["chain"])
    done = {"publish": "published", "cleanup": "removed", "persist": "persisted",
            "persist-remove": "removed"}.get(result["action"], result["action"])
    values = ", ".join(result["values"]) or "nothing"
    line = (f"{result['zone']}: {done} {values} at {where} "
            f"({len(result['providers'])} providers, written in {result['write_seconds']}s)")
    if result.get("propagation_seconds") is not None:
        line += (f"; served by all {result['nameserver_addresses']} nameserver addresses "
                 f"after {result['propagation_seconds']}s")
    return line

