"""The operator's figures, computed from two looks at the running exchange (pure: no I/O).

A ``Sample`` is what ``services/common/collector.py`` saw at one moment: every topic's end
offsets, each processor group's committed offsets, the projector's applied offsets, the
services' Prometheus metrics and two counts from the projection. ``figures(before, after)``
turns two samples into what the dashboard (``GET /dashboard/data``) and ``python -m infra
status`` show: rates are differences over the time between the samples, latencies are
quantiles of the histogram buckets filled between them (Prometheus's ``histogram_quantile``),
lags are the later sample's end offsets less what each reader has taken.

Offsets count records and transaction markers alike (a transaction's commit writes one marker
per partition it touched), so "records per second" of a transactional topic includes its
markers, and a processor that is caught up on a partition some transactional producer writes to
(the ledger's input, fed by the matcher's settlements) shows a lag of 1: the marker after the
last record it read is an offset nobody consumes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Scrape = dict[tuple[str, Labels], float]  # (sample name, sorted labels) -> value
Key = tuple[str, int]  # (topic role, partition)


def parse_scrape(text: str) -> Scrape:
    """Prometheus text exposition -> {(sample name, labels): value}."""
    found: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    ends: Mapping[Key, int]  # end offset (high watermark) of every partition
    committed: Mapping[str, Mapping[int, int]]  # processor group -> partition -> committed offset
    inputs: Mapping[str, str]  # processor group -> the topic role it consumes
    applied: Mapping[Key, int] | None = None  # the projector's next offsets; None: no database
    scrapes: Mapping[str, Scrape | None] = field(default_factory=dict)  # None: did not answer
    open_orders: int | None = None
    accounts: int | None = None


def rate(before: float | None, after: float | None, seconds: float) -> float:
    """A counter's increase per second; a counter that went down was restarted from zero."""
    if after is None or seconds <= 0:
        return 0.0
    start = before or 0.0
    return (after - start if after >= start else after) / seconds


def quantile(q: float, before: Mapping[float, float], after: Mapping[float, float]) -> float | None:
    """The q-quantile of what a histogram observed between two scrapes, from its cumulative
    buckets {upper bound: count} (``inf`` included): linear within the bucket where the rank
    falls, the highest finite bound if it falls in the last. None when nothing was observed."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if counts and counts[-1] < 0:  # restarted: everything since the restart is in `after`
        counts = [after[b] for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def _values(scrape: Scrape | None, name: str, label: str) -> dict[str, float]:
    """{label value: sample value} of one sample name (other labels summed over)."""
    out: dict[str, float] = {}
    for (sample, labels), value in (scrape or {}).items():
        if sample == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


def _buckets(scrape: Scrape | None, name: str, **match: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for (sample, labels), value in (scrape or {}).items():
        if sample != f"{name}_bucket":
            continue
        found = dict(labels)
        if all(found.get(k) == v for k, v in match.items()):
            bound = float(found["le"])
            out[bound] = out.get(bound, 0.0) + value
    return out


def _single(scrape: Scrape | None, name: str, **match: str) -> float | None:
    for (sample, labels), value in (scrape or {}).items():
        if sample == name and all(dict(labels).get(k) == v for k, v in match.items()):
            return value
    return None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _per_label(before: Scrape | None, after: Scrape | None, name: str, label: str, secs: float):
    then, now = _values(before, name, label), _values(after, name, label)
    return [
        {label: key, "per_second": round(rate(then.get(key), now[key], secs), 2), "total": now[key]}
        for key in sorted(now)
    ]


def _lag(end: int, taken: int | None) -> int:
    return max(end - (taken or 0), 0)


def topic_rates(before: Sample, after: Sample, seconds: float) -> list[dict[str, Any]]:
    topics: dict[str, dict[str, Any]] = {}
    for (topic, partition), end in sorted(after.ends.items()):
        row = topics.setdefault(topic, {"topic": topic, "partitions": 0, "end": 0, "grew": 0})
        row["partitions"] += 1
        row["end"] += end
        row["grew"] += max(end - before.ends.get((topic, partition), end), 0)
    return [
        {
            "topic": r["topic"],
            "partitions": r["partitions"],
            "end": r["end"],
            "per_second": round(r["grew"] / seconds, 2) if seconds > 0 else 0.0,
        }
        for r in topics.values()
    ]


def consumer_lag(after: Sample) -> list[dict[str, Any]]:
    """Per processor group and partition of its input: committed offset, end, lag. A partition
    the group never committed counts from 0."""
    rows = []
    for group, topic in sorted(after.inputs.items()):
        committed = after.committed.get(group)
        if committed is None:  # the group does not exist (the other topology's processor)
            continue
        for (t, partition), end in sorted(after.ends.items()):
            if t != topic:
                continue
            taken = committed.get(partition)
            rows.append(
                {
                    "group": group,
                    "topic": topic,
                    "partition": partition,
                    "committed": taken,
                    "end": end,
                    "lag": _lag(end, taken),
                }
            )
    return rows


def projection_lag(after: Sample, topics: Iterable[str]) -> list[dict[str, Any]]:
    if after.applied is None:
        return []
    wanted = set(topics)
    return [
        {
            "topic": topic,
            "partition": partition,
            "applied": after.applied.get((topic, partition)),
            "end": end,
            "lag": _lag(end, after.applied.get((topic, partition))),
        }
        for (topic, partition), end in sorted(after.ends.items())
        if topic in wanted
    ]


def commit_latency(before: Sample, after: Sample, seconds: float) -> list[dict[str, Any]]:
    """Per service: commits per second and the commit call's mean and p99 between the samples
    (None when it committed nothing then), and its commits since it started."""
    rows = []
    for service in sorted(after.scrapes):
        then, now = before.scrapes.get(service), after.scrapes[service]
        name = "marketlog_commit_seconds"
        count = _single(now, f"{name}_count", service=service)
        if count is None:
            continue
        count_then = _single(then, f"{name}_count", service=service) or 0.0
        total = _single(now, f"{name}_sum", service=service) or 0.0
        total_then = _single(then, f"{name}_sum", service=service) or 0.0
        restarted = count < count_then
        commits = count if restarted else count - count_then
        spent = total if restarted else total - total_then
        rows.append(
            {
                "service": service,
                "per_second": round(rate(count_then, count, seconds), 2),
                "mean_ms": _ms(spent / commits) if commits > 0 else None,
                "p99_ms": _ms(
                    quantile(
                        0.99,
                        _buckets(then, name, service=service),
                        _buckets(now, name, service=service),
                    )
                ),
                "total": count,
            }
        )
    return rows


def gateway_figures(before: Scrape | None, after: Scrape | None, seconds: float) -> dict[str, Any]:
    name = "marketlog_gateway_decision_seconds"
    then, now = _buckets(before, name), _buckets(after, name)
    return {
        "orders": _per_label(before, after, "marketlog_gateway_orders_total", "surface", seconds),
        "replies": _per_label(before, after, "marketlog_gateway_replies_total", "outcome", seconds),
        "decision_p50_ms": _ms(quantile(0.5, then, now)),
        "decision_p99_ms": _ms(quantile(0.99, then, now)),
    }


def figures(before: Sample, after: Sample, projected: Iterable[str]) -> dict[str, Any]:
    """Everything the dashboard shows, JSON-ready. `projected`: the topic roles the projector
    reads."""
    seconds = after.at - before.at
    gateway = None
    if "gateway" in after.scrapes:
        gateway = gateway_figures(before.scrapes.get("gateway"), after.scrapes["gateway"], seconds)
    decisions = _per_label(
        before.scrapes.get("projector"),
        after.scrapes.get("projector"),
        "marketlog_decisions_total",
        "type",
        seconds,
    )
    return {
        "seconds": round(seconds, 3),
        "topics": topic_rates(before, after, seconds),
        "consumer_lag": consumer_lag(after),
        "projection_lag": projection_lag(after, projected),
        "commits": commit_latency(before, after, seconds),
        "decisions": decisions,
        "gateway": gateway,
        "open_orders": after.open_orders,
        "accounts": after.accounts,
        "services": [
            {"service": s, "metrics": "up" if after.scrapes[s] is not None else "down"}
            for s in sorted(after.scrapes)
        ],
    }
