"""The ``multisigner`` argument parser (every command, its options and help)."""

from __future__ import annotations

import argparse

from orchestrator.acme_commands import add_acme_parser
from orchestrator.agent_commands import add_agent_parser
from orchestrator.audit_commands import add_audit_parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multisigner",
        description="Keep a DNS zone served and DNSSEC-signed by several providers valid "
        "(RFC 8901 multi-signer).",
    )
    p.add_argument("--config", help="config file (default: $MULTISIGNER_CONFIG or "
                   "./multisigner.toml)")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("check", help="validate config; reach every provider API and nameserver")

    s = sub.add_parser("status", help="per zone: signers, keys, consistency, parent DS, process")
    s.add_argument("zone", nargs="?")
    s.add_argument("--json", action="store_true")

    for name, helptext in (("verify", "check the RFC 8901 invariant from the nameservers"),
                           ("sync", "bring the zone to its model's steady state")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("zone", nargs="?")
        s.add_argument("--all", action="store_true", help="every configured zone")
        if name == "verify":
            s.add_argument("--json", action="store_true")
            s.add_argument("--content", action="store_true",
                           help="also compare the zone data every signer serves (AXFR or a "
                           "sample of names)")
        else:
            s.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")

    s = sub.add_parser("rollover", help="start (or abort) a key rollover process")
    s.add_argument("zone")
    s.add_argument("--key", choices=["zsk", "ksk", "csk"])
    s.add_argument("--signer", help="the provider whose key is rolled (model 2)")
    s.add_argument("--wait", action="store_true", help="run it to the end in the foreground")
    s.add_argument("--abort", action="store_true", help="take the running process back to a "
                   "safe state")

    s = sub.add_parser("signer", help="add or remove a provider as a signer of a zone")
    s.add_argument("action", choices=["add", "remove"])
    s.add_argument("zone")
    s.add_argument("name", help="the provider (as named in the config)")
    s.add_argument("--wait", action="store_true", help="run it to the end in the foreground")

    s = sub.add_parser("ksk", help="model 1: the owner KSK ('init': a zone's first one, only "
                       "while no KSK is served and the parent has no DS)")
    s.add_argument("action", choices=["init"])
    s.add_argument("zone")

    s = sub.add_parser("step", help="advance the zone's process if its conditions hold")
    s.add_argument("zone")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("run", help="the daemon: advance processes, start rollovers by policy")
    s.add_argument("--once", action="store_true", help="one pass, then exit (for cron)")
    s.add_argument("--poll-interval", default="60s", help="longest sleep between passes")
    s.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="serve Prometheus /metrics, /healthz and /readyz there (e.g. "
                   "127.0.0.1:9477; docs/monitoring.md)")

    s = sub.add_parser("history", help="every persisted transition of the zone, oldest first")
    s.add_argument("zone")
    s.add_argument("--json", action="store_true")

    add_audit_parser(sub)
    add_acme_parser(sub)
    add_agent_parser(sub)

    s = sub.add_parser("lab", help="a local lab: PowerDNS parent + providers + Unbound")
    s.add_argument("action", choices=["up", "down", "info"])
    s.add_argument("--dir", default="lab", help="lab directory (default ./lab)")
    s.add_argument("--providers", type=int, default=3)
    s.add_argument("--zones", type=int, default=1, help="number of child zones")
    s.add_argument("--ttl", type=int, default=2, help="TTL of every record, seconds")
    s.add_argument("--model", type=int, choices=[1, 2], default=2,
                   help="2: PowerDNS providers with their own KSKs; 1: Knot offline-KSK "
                   "providers and the owner KSK in SoftHSM2")
    s.add_argument("--delegated", metavar="NAMES",
                   help="comma-separated providers the parent delegates to at first "
                   "(default: all; e.g. p0,p1 leaves p2 to join with 'signer add')")
    return p


