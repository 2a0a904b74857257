"""The ``multisigner`` argument parser (every command, its options and help).

Standard library only: ``--help`` and usage errors must not pay for the imports of the
commands themselves (orchestrator/cli.py)."""

from __future__ import annotations

import argparse
from typing import Any


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
    s.add_argument("--key", choices=["zsk", "ksk", "csk", "sig0"],
                   help="sig0: the zone's SIG(0) key for a dsync parent (no --signer)")
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


def add_audit_parser(sub: Any) -> None:
    """The ``audit`` subcommand's arguments (``sub`` is argparse's subparsers action)."""
    s = sub.add_parser("audit", help="verify, checkpoint or seal the authenticated history")
    s.add_argument("action", choices=["verify", "checkpoint", "seal"])
    s.add_argument("--json", action="store_true")
    s.add_argument("--checkpoint", metavar="FILE",
                   help="verify: also check the history against this exported checkpoint "
                   "(detects truncation and rewrites)")
    s.add_argument("--out", metavar="FILE", help="checkpoint: write it to FILE, not stdout")
    s.add_argument("--reason", help="seal: why, recorded in the history")


def add_agent_parser(sub: Any) -> None:
    """The ``parent-agent`` subcommand (``sub`` is argparse's subparsers action)."""
    s = sub.add_parser("parent-agent", help="run the parent-side agent of [parent_agent] "
                       "(UPDATE receiver, NOTIFY, CDS/CSYNC scans) in the foreground")
    s.add_argument("--scan-once", action="store_true",
                   help="scan every delegated child once, print the outcomes and exit")


def add_acme_parser(sub: Any) -> None:
    """The ``acme`` command and its actions, on the CLI's subparsers."""
    p = sub.add_parser("acme", help="ACME DNS-01 / dns-persist-01 TXT records at every "
                       "signer (following a CNAME-delegated challenge name)")
    acts = p.add_subparsers(dest="acme_action", required=True, metavar="ACTION")

    def common(s: argparse.ArgumentParser, *, wait: bool) -> None:
        s.add_argument("--json", action="store_true")
        s.add_argument("--resolver", metavar="HOST[:PORT]", help="recursive resolver "
                       "for a name outside the configured zones (default: the system's)")
        if wait:
            s.add_argument("--timeout", type=float, metavar="SECONDS", help="how long "
                           "--wait waits (default: the zone's propagation_timeout)")
            s.add_argument("--ttl", type=int, default=60, help="TTL of a new TXT RRset "
                           "(an existing RRset keeps its TTL; default 60)")

    s = acts.add_parser("publish", help="add a DNS-01 value at every signer")
    s.add_argument("fqdn", metavar="FQDN")
    s.add_argument("value", metavar="VALUE")
    s.add_argument("--wait", action="store_true", help="return once every nameserver of "
                   "every signer serves it (validly, in a signed zone)")
    common(s, wait=True)

    s = acts.add_parser("cleanup", help="remove a DNS-01 value (default: every one)")
    s.add_argument("fqdn", metavar="FQDN")
    s.add_argument("value", metavar="VALUE", nargs="?")
    common(s, wait=False)

    s = acts.add_parser("persist", help="dns-persist-01: the _validation-persist record")
    s.add_argument("fqdn", metavar="FQDN")
    s.add_argument("--issuer", required=True, metavar="DOMAIN")
    s.add_argument("--account-uri", required=True, metavar="URI")
    s.add_argument("--wildcard", action="store_true", help="policy=wildcard")
    s.add_argument("--persist-until", metavar="DATE")
    s.add_argument("--remove", action="store_true", help="remove this issuer/account's "
                   "record instead")
    s.add_argument("--wait", action="store_true")
    common(s, wait=True)

    for name, what in (("certbot-auth", "--manual-auth-hook"),
                       ("certbot-cleanup", "--manual-cleanup-hook")):
        s = acts.add_parser(name, help=f"certbot {what} (reads CERTBOT_DOMAIN and "
                            "CERTBOT_VALIDATION)")
        common(s, wait=name == "certbot-auth")

    s = acts.add_parser("lego", help="lego's exec provider (EXEC_PATH): present|cleanup "
                        "FQDN VALUE")
    s.add_argument("lego_action", choices=["present", "cleanup"])
    s.add_argument("fqdn", metavar="FQDN")
    s.add_argument("value", metavar="VALUE")
    common(s, wait=True)
