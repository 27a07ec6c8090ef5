"""Counters every service exposes (Prometheus text on MARKETLOG_METRICS_PORT when set)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server

from .config import Settings

_RECORDS_IN = Counter("marketlog_records_in", "Input records applied", ["service"])
_RECORDS_OUT = Counter("marketlog_records_out", "Records produced", ["service"])
_BATCHES = Counter("marketlog_batches", "Committed transactions", ["service"])
_ABORTS = Counter("marketlog_aborts", "Aborted transactions", ["service"])
_SNAPSHOTS = Counter("marketlog_snapshots", "Snapshots written", ["service"])
_BATCH_SECONDS = Histogram(
    "marketlog_batch_seconds",
    "Batch time from first apply to commit",
    ["service"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0),
)


class ProcessorMetrics:
    """Records in and out, batches, aborts, snapshots and commit latency of one EOS loop."""

    def __init__(self, service: str) -> None:
        self.records_in = _RECORDS_IN.labels(service)
        self.records_out = _RECORDS_OUT.labels(service)
        self.batches = _BATCHES.labels(service)
        self.aborts = _ABORTS.labels(service)
        self.snapshots = _SNAPSHOTS.labels(service)
        self.commit_seconds = _BATCH_SECONDS.labels(service)
        self.service = service

    def total(self, counter: str) -> float:
        """A counter's value (e.g. "records_in") as a scrape reads it: through the registry,
        so benchmarks and tests need no client internals. Counters are per process and label:
        take differences."""
        sample = REGISTRY.get_sample_value(f"marketlog_{counter}_total", {"service": self.service})
        return sample or 0.0


def serve_metrics(settings: Settings) -> None:
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
