"""The operator's figures (services/common/figures.py) against naive twins: quantiles from
histogram buckets against the exact quantile of the observations, rates and lags against
direct arithmetic over the offsets, all over what prometheus_client itself exposes."""

from __future__ import annotations

import asyncio
import bisect
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from services.common import progress
from services.common.figures import (
    Sample,
    consumer_lag,
    figures,
    parse_scrape,
    projection_lag,
    quantile,
    rate,
    topic_rates,
)
from services.common.metrics import LATENCY_BUCKETS, METRICS_PORTS, metrics_port

BOUNDS = (*LATENCY_BUCKETS, math.inf)


def scrape(registry: CollectorRegistry):
    return parse_scrape(generate_latest(registry).decode())


def buckets(found, name: str) -> dict[float, float]:
    return {
        float(dict(labels)["le"]): value
        for (sample, labels), value in found.items()
        if sample == f"{name}_bucket"
    }


def bucket_of(value: float) -> int:
    """Index of the bucket a value falls in (upper bounds inclusive, as Prometheus's `le`)."""
    return bisect.bisect_left(BOUNDS, value)


def naive_quantile(q: float, values: list[float]) -> float:
    """The observation of rank ceil(q * n): what histogram_quantile estimates."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


observations = st.lists(st.floats(0.0001, 8.0), min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(first=st.lists(st.floats(0.0001, 8.0), max_size=50), second=observations)
def test_quantile_falls_in_the_bucket_of_the_exact_quantile(first, second):
    registry = CollectorRegistry()
    hist = Histogram("lat_seconds", "x", buckets=LATENCY_BUCKETS, registry=registry)
    for v in first:
        hist.observe(v)
    before = buckets(scrape(registry), "lat_seconds")
    for v in second:
        hist.observe(v)
    after = buckets(scrape(registry), "lat_seconds")
    for q in (0.5, 0.9, 0.99):
        exact = naive_quantile(q, second)
        estimate = quantile(q, before, after)
        i = bucket_of(exact)
        lower = 0.0 if i == 0 else BOUNDS[i - 1]
        upper = BOUNDS[i] if not math.isinf(BOUNDS[i]) else BOUNDS[i - 1]
        assert lower <= estimate <= upper, (q, exact, estimate)


def test_quantile_of_nothing_is_none_and_a_restart_counts_from_zero():
    assert quantile(0.5, {1.0: 3, math.inf: 3}, {1.0: 3, math.inf: 3}) is None
    assert quantile(0.5, {}, {}) is None
    # the process restarted: fewer counts than before, so `after` alone is the interval
    assert quantile(0.5, {1.0: 10, math.inf: 10}, {0.5: 2, 1.0: 2, math.inf: 2}) == 0.25


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.floats(0.1, 100))
def test_rate_is_the_increase_or_everything_after_a_restart(a, b, seconds):
    expected = (b - a) / seconds if b >= a else b / seconds
    assert math.isclose(rate(a, b, seconds), expected)
    assert rate(a, None, seconds) == 0.0 and rate(a, b, 0) == 0.0


def sample(at, ends, committed=None, applied=None, scrapes=None, **counts):
    return Sample(
        at=at,
        ends=ends,
        committed=committed or {},
        inputs={"ledger": "ledger.commands", "matcher": "match.commands"},
        applied=applied,
        scrapes=scrapes or {},
        **counts,
    )


offsets = st.dictionaries(
    st.tuples(
        st.sampled_from(["ledger.commands", "match.commands", "account.events"]), st.integers(0, 3)
    ),
    st.integers(0, 10_000),
    min_size=1,
)


@given(offsets, st.lists(st.integers(0, 500), min_size=16, max_size=16), st.floats(0.1, 10))
def test_topic_rates_and_lags_match_direct_arithmetic(before_ends, growth, seconds):
    after_ends = {k: v + growth[i % 16] for i, (k, v) in enumerate(sorted(before_ends.items()))}
    committed = {
        "ledger": {p: e // 2 for (t, p), e in after_ends.items() if t == "ledger.commands"}
    }
    applied = {k: max(e - 1, 0) for k, e in after_ends.items() if k[0] == "account.events"}
    before = sample(0.0, before_ends)
    after = sample(seconds, after_ends, committed, applied)

    rows = {r["topic"]: r for r in topic_rates(before, after, seconds)}
    for topic in {t for t, _ in after_ends}:
        mine = [k for k in after_ends if k[0] == topic]
        grew = sum(after_ends[k] - before_ends[k] for k in mine)
        assert rows[topic]["per_second"] == round(grew / seconds, 2)
        assert rows[topic]["end"] == sum(after_ends[k] for k in mine)
        assert rows[topic]["partitions"] == len(mine)

    lag = consumer_lag(after)
    ledger = sorted(k for k in after_ends if k[0] == "ledger.commands")
    assert [(r["topic"], r["partition"]) for r in lag] == ledger  # no matcher group: left out
    for r in lag:
        assert r["lag"] == after_ends[(r["topic"], r["partition"])] - r["committed"]

    projected = projection_lag(after, ["account.events"])
    assert [r["lag"] for r in projected] == [
        min(1, after_ends[k]) for k in sorted(after_ends) if k[0] == "account.events"
    ]


def test_a_partition_never_committed_or_applied_lags_by_its_end():
    after = sample(1.0, {("match.commands", 0): 7}, {"matcher": {}}, applied={})
    assert consumer_lag(after)[0]["lag"] == 7 and consumer_lag(after)[0]["committed"] is None
    assert projection_lag(after, ["match.commands"])[0]["lag"] == 7
    assert projection_lag(sample(1.0, {}, applied=None), ["x"]) == []


def service_registry():
    registry = CollectorRegistry()
    metrics = {
        "orders": Counter("marketlog_gateway_orders", "x", ["surface"], registry=registry),
        "replies": Counter("marketlog_gateway_replies", "x", ["outcome"], registry=registry),
        "latency": Histogram(
            "marketlog_gateway_decision_seconds", "x", buckets=LATENCY_BUCKETS, registry=registry
        ),
        "decisions": Counter("marketlog_decisions", "x", ["type"], registry=registry),
        "commit": Histogram(
            "marketlog_commit_seconds", "x", ["service"], buckets=LATENCY_BUCKETS, registry=registry
        ),
    }
    return registry, metrics


def test_figures_from_what_the_services_expose():
    registry, m = service_registry()
    m["orders"].labels("xml").inc(5)
    m["decisions"].labels("OrderAccepted").inc(5)
    m["commit"].labels("ledger").observe(0.004)
    before = sample(
        0.0,
        {("ledger.commands", 0): 100},
        scrapes={
            "gateway": scrape(registry),
            "projector": scrape(registry),
            "ledger": scrape(registry),
        },
    )
    m["orders"].labels("xml").inc(20)
    m["orders"].labels("http").inc(2)
    m["replies"].labels("OrderPlaced").inc(22)
    for _ in range(22):
        m["latency"].observe(0.015)
    m["decisions"].labels("OrderAccepted").inc(22)
    m["decisions"].labels("Trade").inc(4)
    for _ in range(10):
        m["commit"].labels("ledger").observe(0.008)
    now = scrape(registry)
    after = sample(
        2.0,
        {("ledger.commands", 0): 150},
        {"ledger": {0: 149}},
        scrapes={"gateway": now, "projector": now, "ledger": now, "matcher": None},
        open_orders=3,
        accounts=9,
    )
    f = figures(before, after, ["account.events"])
    assert f["topics"] == [
        {"topic": "ledger.commands", "partitions": 1, "end": 150, "per_second": 25.0}
    ]
    assert f["consumer_lag"][0]["lag"] == 1
    assert {r["surface"]: r["per_second"] for r in f["gateway"]["orders"]} == {
        "http": 1.0,
        "xml": 10.0,
    }
    assert f["gateway"]["replies"] == [{"outcome": "OrderPlaced", "per_second": 11.0, "total": 22}]
    assert 10.0 <= f["gateway"]["decision_p50_ms"] <= 20.0  # the bucket of 15 ms
    assert {r["type"]: r["total"] for r in f["decisions"]} == {"OrderAccepted": 27, "Trade": 4}
    [ledger] = [r for r in f["commits"] if r["service"] == "ledger"]
    assert ledger["per_second"] == 5.0 and ledger["total"] == 11 and ledger["mean_ms"] == 8.0
    assert 5.0 <= ledger["p99_ms"] <= 10.0
    assert (f["open_orders"], f["accounts"]) == (3, 9)
    assert {s["service"]: s["metrics"] for s in f["services"]} == {
        "gateway": "up",
        "projector": "up",
        "ledger": "up",
        "matcher": "down",
    }


def test_metrics_ports_default_per_service_and_override():
    assert metrics_port("gateway", {}) == METRICS_PORTS["gateway"]
    assert len(set(METRICS_PORTS.values())) == len(METRICS_PORTS)
    assert metrics_port("ledger", {"MARKETLOG_METRICS_PORT": "0"}) == 0
    env = {"MARKETLOG_METRICS_PORT": "0", "MARKETLOG_LEDGER_METRICS_PORT": "9999"}
    assert metrics_port("ledger", env) == 9999 and metrics_port("matcher", env) == 0


def test_progress_off_a_terminal_passes_records_and_never_asks_the_total(monkeypatch):
    monkeypatch.setattr(progress, "shown", lambda: False)

    def total():
        raise AssertionError("asked for a total off a terminal")

    assert list(progress.reading(iter(range(2500)), "x", total)) == list(range(2500))
    with progress.counter("x", total) as advance:
        advance(5)


def test_the_feed_shares_one_sample_between_close_refreshes():
    from services.gateway.dashboard.feed import Feed

    class Looks:  # stands in for the collector: samples whose ends grow 10 per look
        taken = 0

        def sample(self):
            Looks.taken += 1
            import time

            return sample(time.monotonic(), {("ledger.commands", 0): 10 * Looks.taken})

        def close(self):
            pass

    feed = Feed(Looks, min_interval=60, first_gap=0.01)

    async def twice():
        return await feed.figures(), await feed.figures()

    first, second = asyncio.run(twice())
    assert first is second and Looks.taken == 2  # the first refresh takes two looks
    assert first["topics"][0]["end"] == 20 and first["topics"][0]["per_second"] > 0


def test_progress_on_a_terminal_passes_records_and_asks_the_total_once(monkeypatch):
    monkeypatch.setattr(progress, "shown", lambda: True)
    asked = []

    def total():
        asked.append(1)
        return 3000  # offsets overcount the records (transaction markers)

    assert list(progress.reading(iter(range(2500)), "x", total)) == list(range(2500))
    assert asked == [1]
