"""Logging: human lines or JSON lines on stderr; stdout stays free for command output.

Every line about a zone carries the zone (and process id when there is one) as a field,
so JSON logs can be filtered per zone. Secrets never reach a log: config holds them as
``SecretStr`` and adapters never log request headers.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

LOGGER = logging.getLogger("multisigner")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        for field in ("zone", "provider", "process_id"):
            value = getattr(record, field, None)
            if value is not None:
                out[field] = value
        return json.dumps(out, sort_keys=True)


def setup(fmt: str, verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    LOGGER.handlers[:] = [handler]
    LOGGER.propagate = False
    LOGGER.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    # httpx logs every request at INFO; only show it when asked for twice.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def progress(line: str, zone: str | None = None) -> None:
    LOGGER.info(line, extra={"zone": zone} if zone else None)
