"""The load generator's bookkeeping: open-loop pacing and what a step's summary says."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bench.loadgen import StepResult, _pace


def test_latency_runs_from_the_due_time_and_the_thirds_split_by_due_time():
    result = StepResult("xml", offered=10, seconds=3.0, start=100.0)
    result.sent = 4
    result.record(due=100.5, now=100.51, ok=True, order_id=1)  # first third: 10 ms
    result.record(due=102.5, now=102.9, ok=True, order_id=2)  # last third: 400 ms
    result.record(due=101.5, now=101.52, ok=False, order_id=None)  # middle, an error
    result.record(due=102.9, now=104.0, ok=True, order_id=4)  # answered after the step
    summary = result.summary()
    assert summary["answered"] == 4 and summary["errors"] == 1
    assert summary["achieved_per_s"] == 1.0  # 3 answered within seconds + 0.5, over 3 s
    assert summary["p99_first_third_ms"] == pytest.approx(10, rel=0.01)
    assert summary["p99_last_third_ms"] == pytest.approx(1100, rel=0.01)
    assert summary["latency_ms"]["p50"] == pytest.approx(20, rel=0.01)
    assert [order for order, _, _ in result.answers] == [1, 2, 4]


def test_requests_fall_due_on_the_clock_whatever_the_sender_does():
    sent: list[tuple[int, float]] = []
    result = StepResult("xml", offered=200, seconds=0.2)
    asyncio.run(_pace(200, 0.2, result, lambda i, due: sent.append((i, due))))
    assert [i for i, _ in sent] == list(range(40)) and result.sent == 40
    gaps = {round(b - a, 9) for (_, a), (_, b) in itertools.pairwise(sent)}
    assert gaps == {0.005}
    assert sent[0][1] == result.start
