"""The per-stage split of the e2e bench (bench/stages.py): its arithmetic, without a broker."""

from bench.loadgen import StepResult
from bench.stages import breakdown

WALL = 1_800_000_000.0  # the step's start on the wall clock, s
PERF = 500.0  # the same instant on perf_counter, s


def _result(orders: list[tuple[int, float, float]]) -> StepResult:
    result = StepResult("xml", 100, 10)
    result.start, result.wall_start = PERF, WALL
    result.answers = [(oid, PERF + due, PERF + answered) for oid, due, answered in orders]
    return result


def _traced(n: int, slow: int):
    """n orders due every 10 ms: 1 ms to the gateway, 1 ms to append, 10 ms to the decision,
    8 ms to the answer; the `slow` last ones wait 100 ms more before the decision."""
    orders, accepted, commands = [], {}, {}
    for i in range(n):
        due_ms = WALL * 1000 + i * 10
        extra = 100 if i >= n - slow else 0
        produced = due_ms + 12 + extra
        orders.append((i, i * 0.010, (produced + 8 - WALL * 1000) / 1000))
        commands[f"c{i}"] = (due_ms + 1, due_ms + 2)
        accepted[i] = (f"c{i}", produced)
    return _result(orders), accepted, commands


def test_each_stage_is_measured_between_its_two_timestamps():
    split = breakdown(*_traced(1000, 0))
    assert split["traced"] == 1000
    for stage, ms in (("to_gateway", 1), ("gateway", 1), ("to_ledger", 10), ("commit_answer", 8)):
        assert split[stage]["p50"] == ms and split[stage]["p99"] == ms


def test_the_slowest_percent_shows_the_stage_that_made_it_slow():
    split = breakdown(*_traced(1000, 10))
    assert split["to_ledger"]["p50"] == 10 and split["to_ledger"]["p99"] == 110
    assert split["slowest_1pct_mean"]["to_ledger"] == 110
    assert split["slowest_1pct_mean"]["commit_answer"] == 8


def test_orders_missing_from_the_log_are_left_out():
    result, accepted, commands = _traced(10, 0)
    del accepted[3]
    del commands["c5"]
    assert breakdown(result, accepted, commands)["traced"] == 8
    assert breakdown(result, {}, commands) is None
