"""Child entry point for bench_sync.py: run the ``multisigner`` CLI exactly as the console
script does (``orchestrator.cli.main(argv)``), but count every network request it makes.

Counting wraps the two seams every controller request goes through:

* ``httpx.AsyncClient.send``  (every PowerDNS API call, retries included), keyed by
  method and endpoint kind (``zone`` = /zones/Z, ``cryptokeys`` = /zones/Z/cryptokeys);
* ``dns.asyncquery.udp`` / ``dns.asyncquery.tcp`` (every DNS query, retries and TC
  fallbacks included), keyed by transport, query type, and whether it went to the parent.

The wrapper adds one dict increment per request (sub-microsecond), so the timings of a
counted run are those of the plain CLI; bench_sync.py also times one uncounted ``status``
as a control. Environment:

* ``BENCH_COUNTS``  file to write the counts to (JSON) at exit;
* ``BENCH_PARENT``  ``address:port`` of the parent nameserver (to tell DS queries apart);
* ``BENCH_PROFILE`` optional: run under cProfile and dump the stats to this file.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys
from typing import Any

import dns.asyncquery
import httpx
from _kinds import dns_kind, http_kind  # bench/ is sys.path[0]

COUNTS: collections.Counter[str] = collections.Counter()
PARENT = os.environ.get("BENCH_PARENT", "")


_send = httpx.AsyncClient.send
_udp = dns.asyncquery.udp
_tcp = dns.asyncquery.tcp


async def _counted_send(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
    COUNTS[http_kind(request.method, request.url.path)] += 1
    return await _send(self, request, **kw)


async def _counted_udp(q: Any, where: str, *args: Any, **kw: Any) -> Any:
    COUNTS[dns_kind("udp", q, where, kw.get("port", 53), PARENT)] += 1
    return await _udp(q, where, *args, **kw)


async def _counted_tcp(q: Any, where: str, *args: Any, **kw: Any) -> Any:
    COUNTS[dns_kind("tcp", q, where, kw.get("port", 53), PARENT)] += 1
    return await _tcp(q, where, *args, **kw)


httpx.AsyncClient.send = _counted_send  # type: ignore[method-assign]
dns.asyncquery.udp = _counted_udp  # type: ignore[assignment]
dns.asyncquery.tcp = _counted_tcp  # type: ignore[assignment]


def _dump() -> None:
    path = os.environ.get("BENCH_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump(dict(sorted(COUNTS.items())), f, indent=1)


def _run_cli(argv: list[str]) -> int:
    from orchestrator.cli import main as cli_main  # imported here: profiled too

    return cli_main(argv)


def main() -> int:
    atexit.register(_dump)
    argv = sys.argv[1:]
    profile = os.environ.get("BENCH_PROFILE")
    if not profile:
        return _run_cli(argv)
    import cProfile

    prof = cProfile.Profile()
    try:
        return int(prof.runcall(_run_cli, argv))
    finally:
        prof.dump_stats(profile)


if __name__ == "__main__":
    sys.exit(main())
