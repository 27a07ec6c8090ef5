"""The engine (services/engine) against its twin: the split pipeline of the same two cores with
each command carried to quiet before the next (testkit's Market), byte for byte per stream."""

from __future__ import annotations

from collections import defaultdict

import pytest

from services.common.config import Settings
from services.engine.service import EngineCore
from testkit.history import STREAMS, Market, history_chunks
from testkit.pipeline import MARKET_EVENTS, codec

SETTINGS = Settings(kafka="in-memory", topic_prefix="")
TOPIC = {stream: topic for topic, stream in STREAMS.items()}


def split_run(events: int, seed: int) -> tuple[list[bytes], dict]:
    """The gateways' commands of a seeded history, and the split pipeline's output streams
    (decoded: every field of every record compared)."""
    market = Market()
    submitted: list[bytes] = []
    submit = market.pipeline.submit

    def recording(name: str, record: dict) -> None:
        submitted.append(codec().encode(name, record))
        submit(name, record)

    market.pipeline.submit = recording
    streams: dict = defaultdict(list)
    for chunk in history_chunks(events, seed, market=market):  # decoded, the log trimmed after
        for stream, key, name, record in chunk:
            streams[TOPIC[stream], key].append((name, record))
    return submitted, streams


def engine_run(commands: list[bytes], restart_at: int | None = None) -> dict:
    core = EngineCore(SETTINGS)
    engine = core.fresh(0, 1)
    streams: dict = defaultdict(list)
    for i, value in enumerate(commands):
        if i == restart_at:  # what the processor does after a crash: restore the snapshot
            engine = core.restore(0, 1, engine.snapshot())
        for out in engine.apply(value):
            streams[out.topic, out.key].append(codec().decode(out.value))
    return streams


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_engine_decides_what_the_split_pipeline_decides(seed):
    commands, split = split_run(3000, seed)
    engine = engine_run(commands)
    assert sum(map(len, split.values())) >= 3000
    assert {k for k in split if k[0] == MARKET_EVENTS}, "the history trades"
    assert engine.keys() == split.keys()
    for stream, values in split.items():
        assert engine[stream] == values, stream


def test_a_restored_engine_goes_on_exactly_as_the_straight_one():
    commands, _ = split_run(1500, 7)
    assert engine_run(commands, restart_at=len(commands) // 2) == engine_run(commands)


def test_the_engine_refuses_more_than_one_partition():
    with pytest.raises(ValueError, match="one sequence"):
        EngineCore(SETTINGS).fresh(0, 4)
