"""Prometheus metrics every service exposes, on by default on loopback.

Each service has a fixed default port (``METRICS_PORTS``: the README's ports table), so the
operator dashboard and ``python -m infra status`` know where to scrape without being told.
``MARKETLOG_<SERVICE>_METRICS_PORT`` (e.g. ``MARKETLOG_GATEWAY_METRICS_PORT``) moves one service;
``MARKETLOG_METRICS_PORT`` moves every service that has no port of its own (``0`` turns them
off: the test and benchmark stacks do that unless a test asks for metrics). A port already taken
(a second instance on one machine) costs a warning, not the service.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

# service -> default metrics port; the README's ports table lists them
METRICS_PORTS = {
    "gateway": 9400,
    "ledger": 9401,
    "matcher": 9402,
    "engine": 9403,
    "projector": 9404,
}

_RECORDS_IN = Counter("marketlog_records_in", "Input records applied", ["service"])
_RECORDS_OUT = Counter("marketlog_records_out", "Records produced", ["service"])
_BATCHES = Counter("marketlog_batches", "Committed transactions", ["service"])
_ABORTS = Counter("marketlog_aborts", "Aborted transactions", ["service"])
_SNAPSHOTS = Counter("marketlog_snapshots", "Snapshots written", ["service"])
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)
_BATCH_SECONDS = Histogram(
    "marketlog_batch_seconds",
    "Batch time from first apply to commit",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
_COMMIT_SECONDS = Histogram(
    "marketlog_commit_seconds",
    "Time of one transaction's commit call (Kafka commit_transaction, or the projector's"
    " PostgreSQL write of a batch with its offsets)",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
# decisions by record type, as the projector folds them (it reads every decision topic, whatever
# the topology); a batch re-read after a failed write is counted again
_DECISIONS = Counter("marketlog_decisions", "Decisions projected, by record type", ["type"])


class ProcessorMetrics:
    """Records in and out, batches, aborts, snapshots and commit latency of one EOS loop."""

    def __init__(self, service: str) -> None:
        self.records_in = _RECORDS_IN.labels(service)
        self.records_out = _RECORDS_OUT.labels(service)
        self.batches = _BATCHES.labels(service)
        self.aborts = _ABORTS.labels(service)
        self.snapshots = _SNAPSHOTS.labels(service)
        self.commit_seconds = _BATCH_SECONDS.labels(service)
        self.commit_call_seconds = _COMMIT_SECONDS.labels(service)
        self.service = service

    def total(self, counter: str) -> float:
        """A counter's value (e.g. "records_in") as a scrape reads it: through the registry,
        so benchmarks and tests need no client internals. Counters are per process and label:
        take differences."""
        sample = REGISTRY.get_sample_value(f"marketlog_{counter}_total", {"service": self.service})
        return sample or 0.0


class DecisionCounter:
    """Decisions by short record type ("OrderAccepted"); one label child per type, cached."""

    def __init__(self) -> None:
        self._children: dict[str, Counter] = {}

    def count(self, names: Mapping[str, int]) -> None:
        for name, n in names.items():
            child = self._children.get(name)
            if child is None:
                child = self._children[name] = _DECISIONS.labels(name.rsplit(".", 1)[-1])
            child.inc(n)


def metrics_port(service: str, environ: Mapping[str, str] = os.environ) -> int:
    """Where `service` serves its metrics (0: nowhere)."""
    own = environ.get(f"MARKETLOG_{service.upper()}_METRICS_PORT")
    if own:
        return int(own)
    shared = environ.get("MARKETLOG_METRICS_PORT")
    if shared:
        return int(shared)
    return METRICS_PORTS[service]


def serve_metrics(service: str) -> int:
    """Serve the process's metrics on 127.0.0.1 at `service`'s port; returns the port (0: off,
    or taken by another process)."""
    port = metrics_port(service)
    if not port:
        return 0
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as exc:
        log.warning("metrics not served: 127.0.0.1:%d: %s", port, exc)
        return 0
    return port
