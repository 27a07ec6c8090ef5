"""Snapshots, the wire format and the Kafka shell's record handling, without a broker."""

from __future__ import annotations

import logging
import random

import pytest

from services.common.codec import Codec
from services.common.config import Settings
from services.ledger import persist
from services.ledger.service import LedgerCore, Wire, as_record, record_name
from services.ledger.state import Ledger
from testkit import records as r
from testkit.pipeline import LEDGER_COMMANDS, Pipeline
from testkit.simulation import random_session

CODEC = Codec()


@pytest.fixture(scope="module")
def session() -> Pipeline:
    pipeline = Pipeline(3, project=False)
    random_session(pipeline, random.Random(11), 4000, accounts=12)
    return pipeline


def decisions_of(pipeline: Pipeline, partition: int) -> tuple[Ledger, list]:
    """A ledger partition's core run again from scratch over its logged input: the state it
    ends in and every decision it made."""
    ledger = Ledger(partition, pipeline.partitions)
    inputs = pipeline.inputs(LEDGER_COMMANDS, partition)
    return ledger, [d for name, rec in inputs for d in ledger.apply(name, rec)]


def test_snapshot_restore_keeps_the_state_hash_and_the_bytes(session):
    for partition, ledger in enumerate(session.ledgers()):
        data = persist.dump(ledger)
        restored = persist.load(data, partition, 3)
        assert persist.dump(restored) == data
        assert persist.state_hash(restored) == persist.state_hash(ledger)


def test_a_restored_ledger_decides_like_the_original():
    pipeline = Pipeline(1, project=False)
    random_session(pipeline, random.Random(5), 3000)
    inputs = pipeline.inputs(LEDGER_COMMANDS, 0)
    half = len(inputs) // 2
    first = Ledger(0, 1)
    for name, rec in inputs[:half]:
        first.apply(name, rec)
    restored = persist.load(persist.dump(first), 0, 1)
    tail = [as_record(d) for name, rec in inputs[half:] for d in restored.apply(name, rec)]
    straight, decisions = decisions_of(pipeline, 0)
    original = [as_record(d) for d in decisions]
    assert tail == original[len(original) - len(tail) :]
    assert persist.state_hash(restored) == persist.state_hash(straight)
    assert persist.state_hash(restored) == persist.state_hash(pipeline.ledgers()[0])


def test_the_state_hash_does_not_depend_on_insertion_order():
    a, b = Ledger(0, 1), Ledger(0, 1)
    for ledger, people in ((a, ["x", "y"]), (b, ["y", "x"])):
        for person in people:
            ledger.apply(*r.create_account(r.envelope("c", person, 1), 5))
    assert persist.state_hash(a) == persist.state_hash(b)


def test_a_snapshot_restores_only_into_its_own_partitioning(session):
    data = persist.dump(session.ledgers()[1])
    with pytest.raises(persist.SnapshotError):
        persist.load(data, 1, 4)  # other order ids would collide
    with pytest.raises(persist.SnapshotError):
        persist.load(b"not json", 1, 3)


def test_wire_encodes_every_decision_as_its_avro_record(session):
    wire = Wire()
    decisions = [d for p in range(session.partitions) for d in decisions_of(session, p)[1]]
    assert {record_name(d) for d in decisions} >= {
        "marketlog.account.OrderAccepted",
        "marketlog.account.OrderFilled",
        "marketlog.account.OrderClosed",
        "marketlog.match.PlaceOrder",
        "marketlog.match.CancelOrder",
    }
    for decision in decisions:
        key, _ = decision
        name, record = CODEC.decode(wire.encode(decision))
        assert (name, record) == (record_name(decision), as_record(decision))
        assert record["envelope"]["key"] == key


def shell(partition: int = 0, partitions: int = 1):
    settings = Settings(kafka="unused:1", topic_prefix="p.", partitions=partitions)
    return LedgerCore(settings).fresh(partition, partitions)


def test_the_shell_keys_decisions_by_account_and_forwards_by_symbol():
    ledger = shell()
    symbol = ledger.apply(CODEC.encode(*r.create_symbol(r.envelope("c1", "X", 1), 1, 1)))
    account = ledger.apply(CODEC.encode(*r.create_account(r.envelope("c2", "a", 2), 10**9)))
    order = r.place_order(r.envelope("c3", "a", 3), "X", "BUY", 10, 10)
    placed = ledger.apply(CODEC.encode(*order))
    assert [(o.topic, o.key, o.partition) for o in symbol + account + placed] == [
        ("p.account.events", "X", None),
        ("p.account.events", "a", None),
        ("p.account.events", "a", None),
        ("p.match.commands", "X", None),
    ]
    name, forward = CODEC.decode(placed[1].value)
    assert name == "marketlog.match.PlaceOrder"
    assert forward["envelope"] == {"command_id": "c3", "key": "X", "ts": 3, "reply_to": ""}
    assert CODEC.decode(placed[0].value)[1]["envelope"]["key"] == "a"


def test_the_shell_skips_what_it_cannot_read(caplog):
    ledger = shell()
    trade = {
        "envelope": r.envelope("c", "X", 1),
        "seq": 1,
        "price": 1,
        "qty": 1,
        "maker_order_id": 1,
        "taker_order_id": 2,
        "taker_side": "BUY",
        "maker_remaining": 0,
        "taker_remaining": 0,
    }
    with caplog.at_level(logging.WARNING, logger="services.ledger.service"):
        assert ledger.apply(b"garbage") == []
        assert ledger.apply(b"\xc3\x01" + b"\x00" * 8 + b"x") == []
        assert ledger.apply(CODEC.encode("marketlog.market.Trade", trade)) == []
    assert len(caplog.records) == 3
    assert "not a ledger command" in caplog.records[2].getMessage()
    assert persist.state_hash(ledger.ledger) == persist.state_hash(shell().ledger)


def test_the_shell_restores_what_it_snapshots():
    core = LedgerCore(Settings(kafka="unused:1", topic_prefix="", partitions=2))
    first = core.fresh(1, 2)
    first.apply(CODEC.encode(*r.create_account(r.envelope("c", "a", 1), 7)))
    again = core.restore(1, 2, first.snapshot())
    assert again.snapshot() == first.snapshot()
    assert again.ledger.accounts["a"].cash == 7
