"""The gateway's own Prometheus metrics: orders received by surface, replies by outcome and the time
from appending a command to its answer (the decision latency a client sees, less its network), and
the decisions its account tail decoded or skipped (services/gateway/hearing.py). Served with the
processors' counters (services/common/metrics.py) on the gateway's metrics port; the operator
dashboard reads them from there."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_ORDERS = Counter("marketlog_gateway_orders", "Orders received, by surface", ["surface"])
_REPLIES = Counter(
    "marketlog_gateway_replies",
    "Commands answered, by outcome: the answering decision's type, timeout or append_failed",
    ["outcome"],
)
_DECISION_SECONDS = Histogram(
    "marketlog_gateway_decision_seconds",
    "From appending a command to its answering decision",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)

_HEARD = Counter(
    "marketlog_gateway_decisions_heard",
    "account.events decisions heard: decoded (a pending command, a subscriber or the directory"
    " here needed it) or skipped (read to its envelope: only its place in the log noted)",
    ["read"],
)


class DecisionsHeard:
    """Decoded and skipped decisions, counted once per batch the tail hands the loop."""

    def __init__(self) -> None:
        self._decoded = _HEARD.labels("decoded")
        self._skipped = _HEARD.labels("skipped")

    def count(self, decoded: int, skipped: int) -> None:
        if decoded:
            self._decoded.inc(decoded)
        if skipped:
            self._skipped.inc(skipped)


class GatewayMetrics:
    """Label children resolved once each: a labels() lookup per order would cost more than the
    increment."""

    def __init__(self) -> None:
        self._orders: dict[str, Counter] = {}
        self._replies: dict[str, Counter] = {}
        self._latency = _DECISION_SECONDS

    def order(self, surface: str) -> None:
        child = self._orders.get(surface)
        if child is None:
            child = self._orders[surface] = _ORDERS.labels(surface)
        child.inc()

    def reply(self, outcome: str, seconds: float) -> None:
        child = self._replies.get(outcome)
        if child is None:
            child = self._replies[outcome] = _REPLIES.labels(outcome)
        child.inc()
        self._latency.observe(seconds)
