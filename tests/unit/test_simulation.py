"""Deterministic simulation of the whole exchange in memory, a few hundred seeds per CI run.

Each seed is one run of testkit.simulate: random commands, random delivery across partitions,
random crashes restored from snapshot + replay, every invariant checked (conservation, holds, no
crossed book, the ledger and the books agreeing, replay = straight run byte for byte, rebuild =
incremental projection = the cores' state). A failing seed's message says how to rerun it;
`make simulate SEEDS=N` runs as many as you like.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from testkit import simulate
from testkit.invariants import at_rest_problems
from testkit.pipeline import ACCOUNT_EVENTS, Pipeline
from testkit.simulation import random_session

CI_SEEDS = 300


@pytest.mark.parametrize("seed", range(CI_SEEDS))
def test_a_seeded_run_keeps_every_invariant(seed):
    simulate.run(seed)  # raises SimulationFailure: the problems, and the command to rerun it


def test_a_seed_runs_the_same_way_every_time():
    first, again = simulate.run(11), simulate.run(11)
    assert first == again
    assert first.crashes and first.records > 100  # this seed crashes processes and trades
    assert simulate.run(12).digest != first.digest


def test_a_failure_names_its_seed_and_how_to_rerun_it():
    failure = simulate.SimulationFailure(42, "at rest", ["cash: 1 came in, accounts hold 2"])
    assert "seed 42" in str(failure) and "make simulate SEED=42" in str(failure)
    assert "cash: 1 came in" in str(failure)


def test_day_trading_runs_beside_the_exchange_and_keeps_every_invariant():
    """The simulation's day trading (make simulate mixes it in): commands of exchange accounts
    and of ADD-only ones, expiries, trigger executions, on two partitions with snapshots every 7
    records; at rest, every invariant (conservation with the day-trading flows, replay byte for
    byte, the projection) holds."""
    pipeline = Pipeline(2, snapshot_every=7)
    random_session(pipeline, random.Random(3), 6000, accounts=8, day_trading=True)
    assert at_rest_problems(pipeline) == []
    seen = Counter()
    for _, _, name, record in pipeline.records(ACCOUNT_EVENTS):
        kind = name.rsplit(".", 1)[1]
        seen[kind] += 1
        if kind == "DayTradeDecided" and record["ok"]:
            seen[record["command"]] += 1
    assert seen["PendingExpired"] and seen["TriggerFired"] and seen["QuoteTicked"]
    assert seen["COMMIT_BUY"] and seen["COMMIT_SELL"] and seen["SET_SELL_TRIGGER"]
