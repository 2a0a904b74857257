"""Logging: human lines or JSON lines on stderr; stdout stays free for command output.

Every line about a zone carries the zone (and process id when there is one) as a field,
so JSON logs can be filtered per zone. Every JSON line also names the replica that wrote
it (``replica``: ``$MULTISIGNER_REPLICA`` if set, else this process's lease holder label
``HOST:PID:NONCE``, the name other replicas see in lease refusals), so the logs of several
daemons sharing one state database can be told apart; the daemon (``multisigner run``)
puts it in text lines too. Secrets never reach a log: config holds them as ``SecretStr``
and adapters never log request headers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

LOGGER = logging.getLogger("multisigner")
REPLICA_ENV = "MULTISIGNER_REPLICA"


def replica() -> str:
    """This process's name in logs (module docstring)."""
    name = os.environ.get(REPLICA_ENV)
    if name:
        return name
    # imported on first use: the CLI sets logging up before it knows whether the command
    # needs the state package at all (orchestrator/cli.py keeps start-up light)
    from state.holders import holder_label, process_holder

    return holder_label(process_holder())


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "replica": replica(),
        }
        for field in ("zone", "provider", "process_id"):
            value = getattr(record, field, None)
            if value is not None:
                out[field] = value
        return json.dumps(out, sort_keys=True)


class _TextFormatter(logging.Formatter):
    """``HH:MM:SS message``; with ``named``, ``HH:MM:SS [replica] message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", "%H:%M:%S")
        self.named = False

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not self.named:
            return line
        stamp, _, rest = line.partition(" ")
        return f"{stamp} [{replica()}] {rest}"


def setup(fmt: str, verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.propagate = False
    LOGGER.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    # httpx logs every request at INFO; only show it when asked for twice.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def name_replica() -> None:
    """Name the replica in text lines too (the daemon: several may run side by side)."""
    for handler in LOGGER.handlers:
        if isinstance(handler.formatter, _TextFormatter):
            handler.formatter.named = True


def progress(line: str, zone: str | None = None) -> None:
    LOGGER.info(line, extra={"zone": zone} if zone else None)
