"""The HTTP side: ``/metrics`` (Prometheus text format), ``/healthz`` and ``/readyz``,
served by a small threaded WSGI server beside the daemon's event loop.

- ``/healthz``: 200 while the process serves HTTP at all (for a liveness probe that
  restarts a hung container; it deliberately checks nothing else, so a database outage
  does not make every replica restart at once).
- ``/readyz``: 200 only if the state database answers, the daemon's loop runs, every
  lease it holds was renewed within the lease's length, and a scan of every zone ended
  recently (within three poll intervals plus a minute's grace); 503 with the reasons
  otherwise, one per line.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from orchestrator.metrics.collector import Collector

StartResponse = Callable[..., Any]
GRACE_SECONDS = 60.0


@dataclass
class Readiness:
    """What /readyz checks: ``database()`` raises if the state database does not answer;
    ``running()`` is True while the daemon loop runs."""

    collector: Collector
    database: Callable[[], object]
    running: Callable[[], bool]
    poll_interval: float

    def problems(self) -> list[str]:
        out: list[str] = []
        try:
            self.database()
        except Exception as exc:  # any failure to answer means "not ready", said plainly
            out.append(f"state database unreachable: {type(exc).__name__}: {exc}")
        if not self.running():
            out.append("the daemon loop is not running")
        overdue = self.collector.overdue_leases()
        if overdue:
            out.append(f"lease renewal behind for {len(overdue)} zone(s): "
                       + ", ".join(overdue[:10]))
        since = self.collector.seconds_since_pass(scan=True)
        limit = 3 * self.poll_interval + GRACE_SECONDS
        if since is None:
            out.append("no scan of every zone has finished yet")
        elif since > limit:
            out.append(f"the last scan of every zone ended {since:.0f}s ago (limit "
                       f"{limit:.0f}s)")
        return out


class _Quiet(WSGIRequestHandler):
    """No access log on stderr: the daemon's log is for the daemon."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def application(registry: CollectorRegistry, ready: Readiness) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            problems = ready.problems()
            if problems:
                return _text(start_response, "503 Service Unavailable",
                             "".join(f"{p}\n" for p in problems))
            return _text(start_response, "200 OK", "ready\n")
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        return _text(start_response, "404 Not Found",
                     "not found: try /metrics, /healthz or /readyz\n")

    return app


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data)))])
    return [data]


class _ServerV6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class HttpServer:
    """The WSGI server on its own (daemon) thread; ``close()`` stops it."""

    def __init__(self, host: str, port: int, app: Callable[..., Iterable[bytes]]) -> None:
        kind = _ServerV6 if ":" in host else ThreadingWSGIServer
        self.server: WSGIServer = make_server(host, port, app, kind, handler_class=_Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics http",
                                       daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
