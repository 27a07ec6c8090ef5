"""Deterministic simulation: one seed, one whole run of the exchange, every invariant checked.

In the spirit of FoundationDB's and TigerBeetle's simulators: a seed decides everything — the
shape of the exchange (partitions, traders, symbols and their tick and lot sizes, how often
snapshots are taken), the commands (testkit.simulation, day trading included), which stage
consumes which partition when and in what batch sizes, and where processes crash (mid-batch,
before the commit: restored from the newest snapshot plus a silent replay). The ledger and book
invariants are checked after every transaction; once everything has settled, all of
testkit.invariants (conservation, the ledger and the books agreeing, replay = straight run byte
for byte, rebuild = incremental projection = the cores' state). Nothing reads a clock or an
unseeded random number, so a failing
seed fails the same way every time:

    make simulate SEED=1234            # one seed, its problems in full
    make simulate SEEDS=5000           # seeds 0..4999
    python -m testkit.simulate --seeds 5000 --start 10000
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from dataclasses import dataclass

from .invariants import at_rest_problems, book_problems, ledger_problems
from .pipeline import TOPICS, Pipeline, Stage
from .simulation import LOT, TICK, Gateway, Traders, open_market, random_command


@dataclass(frozen=True)
class Scenario:
    """What a seed chose before the first command."""

    partitions: int
    people: int
    specs: dict[str, tuple[int, int]]
    commands: int
    snapshot_every: int  # records between a partition's snapshots (0: never)
    crash_rate: float  # share of transactions that crash before their commit
    max_batch: int
    lag: int  # most transactions delivered after each command

    @classmethod
    def draw(cls, rng: random.Random) -> Scenario:
        sizes = [(TICK, LOT), (TICK, LOT), (1, 1), (2500, 100), (TICK, 1)]
        return cls(
            partitions=rng.randint(1, 4),
            people=rng.randint(2, 8),
            specs={f"S{i}": rng.choice(sizes) for i in range(rng.randint(1, 3))},
            commands=rng.randint(20, 160),
            snapshot_every=rng.choice((0, 1, 3, 10, 40)),
            crash_rate=rng.choice((0.0, 0.05, 0.2)),
            max_batch=rng.choice((1, 4, 16, 64)),
            lag=rng.choice((1, 3, 6)),
        )


class SimulationFailure(AssertionError):
    def __init__(self, seed: int, when: str, problems: list[str]) -> None:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"seed {seed}: {len(problems)} problem(s) {when}:\n  {shown}{more}\n"
            f"rerun: make simulate SEED={seed}   (or: .venv/bin/python -m testkit.simulate "
            f"--seed {seed})"
        )
        self.seed, self.problems = seed, problems


@dataclass
class Outcome:
    seed: int
    scenario: Scenario
    steps: int
    crashes: int
    records: int  # every record appended, over all topics
    digest: str  # of every record of every topic: equal runs give equal digests


def run(seed: int) -> Outcome:
    """One simulated run; raises SimulationFailure naming the seed and how to rerun it."""
    rng = random.Random(seed)
    scenario = Scenario.draw(rng)
    pipeline = Pipeline(scenario.partitions, snapshot_every=scenario.snapshot_every)
    gw = Gateway(pipeline)
    traders = Traders(
        [f"a{i}" for i in range(scenario.people)], dict(scenario.specs), day_trading=True
    )
    open_market(gw, rng, traders, shares=50)
    steps = 0
    for command in range(scenario.commands):
        random_command(gw, rng, traders)
        for _ in range(rng.randint(0, scenario.lag)):
            steps += deliver(pipeline, rng, scenario, seed, f"at command {command}")
    while not pipeline.quiet():  # the rest settles, crashes included
        steps += deliver(pipeline, rng, scenario, seed, "while settling")
    problems = at_rest_problems(pipeline)
    if problems:
        raise SimulationFailure(seed, f"at rest after {steps} transactions", problems)
    crashes = sum(stage.crashes for stage in pipeline.stages)
    return Outcome(seed, scenario, steps, crashes, pipeline.log.stamp, digest(pipeline))


def digest(pipeline: Pipeline) -> str:
    h = hashlib.sha256()
    for topic in TOPICS:
        for partition, _, record in pipeline.log.in_order(topic):
            h.update(f"{topic}/{partition}/{record.key}/{len(record.value)}:".encode())
            h.update(record.value)
    return h.hexdigest()


def deliver(pipeline: Pipeline, rng: random.Random, scenario: Scenario, seed: int, when: str):
    """One transaction of a random stage and partition with input waiting (maybe crashing);
    then the invariants that hold at every moment. Returns 1 if it ran, 0 if all was quiet."""
    work = pipeline.work()
    if not work:
        return 0
    stage, unit = rng.choice(work)
    records = rng.randint(1, scenario.max_batch)
    crash = rng.randint(0, records) if rng.random() < scenario.crash_rate else None
    stage.step(unit, records, crash)
    problems = []
    if stage is pipeline.ledger:
        problems = ledger_problems(pipeline, unit)
    elif isinstance(stage, Stage):
        problems = book_problems(pipeline)
    if problems:
        raise SimulationFailure(seed, f"{when}, after {stage.name} partition {unit}", problems)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testkit.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, help="run this one seed and show its problems")
    parser.add_argument("--seeds", type=int, default=5000, help="how many seeds (default 5000)")
    parser.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    failed, records, started = [], 0, time.perf_counter()
    for seed in seeds:
        try:
            records += run(seed).records
        except SimulationFailure as failure:
            failed.append(seed)
            print(failure, file=sys.stderr)
    seconds = time.perf_counter() - started
    print(
        f"{len(seeds)} seeds in {seconds:.1f} s ({len(seeds) / seconds:.1f} seeds/s, "
        f"{records / seconds:,.0f} records/s): "
        + (f"{len(failed)} failed: {failed[:50]}" if failed else "all passed")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
