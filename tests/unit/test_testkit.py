"""The in-memory log and the pipeline runner behave as Kafka and the processor loop do."""

from __future__ import annotations

import random

import pytest

from testkit import records as r
from testkit.invariants import at_rest_problems
from testkit.log import Log, murmur2, partition_for
from testkit.pipeline import ACCOUNT_EVENTS, LEDGER_COMMANDS, Pipeline
from testkit.simulation import Gateway, random_session


def test_murmur2_is_kafkas():
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {data: murmur2(data) for data in cases} == cases
    assert partition_for("foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7


def test_the_log_keeps_offsets_per_partition_and_the_order_of_appends():
    log = Log()
    log.create("t", 2)
    appended = [log.append("t", key, key.encode()) for key in ("a", "b", "a", "c", "b")]
    assert [p for p, _ in appended] == [partition_for(k, 2) for k in "abacb"]
    assert [(p, o, rec.key) for p, o, rec in log.in_order("t")] == [
        (p, o, k) for (p, o), k in zip(appended, "abacb", strict=True)
    ]
    p = partition_for("a", 2)
    log.partition("t", p).trim(1)
    assert log.end("t", p) == len(log.read("t", p, 1)) + 1  # offsets survive the trim
    with pytest.raises(ValueError):
        log.read("t", p, 0)


def test_create_symbol_goes_to_every_ledger_partition_like_the_gateway_sends_it():
    pipeline = Pipeline(3)
    pipeline.submit(*r.create_symbol(r.envelope("c1", "X", 1), 1, 1))
    pipeline.submit(*r.create_account(r.envelope("c2", "a", 2), 10))
    ends = [pipeline.log.end(LEDGER_COMMANDS, p) for p in range(3)]
    assert sorted(ends) == [1, 1, 2] and ends[partition_for("a", 3)] == 2


def session(seed: int, crash: float) -> Pipeline:
    """A seeded session; with probability `crash` a transaction dies before its commit, and the
    restarted partition takes the same batch again (the delivery order does not depend on it)."""
    deliver, crashes = random.Random(seed), random.Random(seed + 1)
    pipeline = Pipeline(2, snapshot_every=3)
    gw = Gateway(pipeline)
    for command in [
        r.create_symbol(gw.envelope("X"), 1, 1),
        r.create_account(gw.envelope("a"), 10**6),
        r.create_account(gw.envelope("b"), 0),
        r.issue_shares(gw.envelope("b"), "X", 100),
    ]:
        gw.send(command)
    for n in range(40):
        account, side = ("b", "SELL") if n % 2 else ("a", "BUY")
        gw.send(r.place_order(gw.envelope(account), "X", side, 5, 100 + deliver.randrange(-3, 4)))
    while work := pipeline.work():
        stage, unit = deliver.choice(work)
        records = deliver.randint(1, 5)
        if crashes.random() < crash:
            stage.step(unit, records, crashes.randint(0, records))
        stage.step(unit, records)
    return pipeline


def test_crashes_before_commits_change_no_record():
    calm, crashing = session(3, 0.0), session(3, 0.5)
    assert sum(s.crashes for s in crashing.stages) > 20
    assert at_rest_problems(crashing) == []
    for topic in crashing.log.topics:
        logged = [[(p, o, rec.key, rec.value) for p, o, rec in x.log.in_order(topic)]
                  for x in (calm, crashing)]  # fmt: skip
        assert logged[0] == logged[1] != []
    assert crashing.projector.tables == calm.projector.tables


def test_a_crashed_partition_restores_its_snapshot_and_replays_to_the_commit():
    pipeline = Pipeline(1, snapshot_every=4, project=False)
    random_session(pipeline, random.Random(2), 300, accounts=5, symbols=2)
    for stage in (pipeline.ledger, pipeline.matcher):
        before = stage.states[0].snapshot()
        assert stage.snapshots[0] is not None and stage.snapshots[0][0] < stage.committed[0]
        stage.crash(0)
        assert stage.states[0].snapshot() == before


def test_the_caller_chooses_the_delivery_order():
    one, other = Pipeline(2, project=False), Pipeline(2, project=False)
    random_session(one, random.Random(5), 400, accounts=6)
    random_session(other, random.Random(6), 400, accounts=6)
    assert at_rest_problems(one) == [] and at_rest_problems(other) == []
    first = [rec.value for _, _, rec in one.log.in_order(ACCOUNT_EVENTS)]
    assert first != [rec.value for _, _, rec in other.log.in_order(ACCOUNT_EVENTS)]
