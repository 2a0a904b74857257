"""Prometheus metrics and health endpoints for the daemon (``multisigner run
--metrics-listen HOST:PORT``); docs/monitoring.md lists every metric.

The metrics come from the in-process event bus (``core/events.py``, docs/hooks.md), so
the engine knows nothing about Prometheus: ``Collector`` subscribes to the events,
``ScrapeTime`` reads the state database when Prometheus scrapes, and ``HttpServer`` serves
``/metrics``, ``/healthz`` and ``/readyz`` from a thread beside the event loop.
"""

