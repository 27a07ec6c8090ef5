"""Arbitrary ledger records, drawn from the Avro schemas themselves, never break the ledger.

Any field may hold any value its schema allows (longs across the whole 64-bit range, keys that hit
existing accounts, orders and symbols, one-sided or inconsistent settlements). The core must not
raise, must leave no balance negative and every hold as its rules say, and must only emit
decisions that encode under their schemas (so no amount ever leaves the 64-bit range).
"""

from __future__ import annotations

import functools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.codec import Codec
from services.common.money import MAX_UNITS
from services.ledger import persist
from services.ledger.service import as_record, record_name
from services.ledger.state import Ledger
from testkit.audit import partition_problems
from testkit.pipeline import Pipeline
from testkit.simulation import LOT, MID, TICK, random_session

CODEC = Codec()
LEDGER_RECORDS = sorted(name for name in CODEC.schemas if name.startswith("marketlog.ledger."))

longs = st.one_of(
    st.integers(-(2**63), MAX_UNITS),
    st.integers(-2, 400),  # order ids of the warm-up session, small quantities
    st.integers(-3, 30).map(lambda n: n * LOT),
    st.integers(-20, 20).map(lambda n: MID + n * TICK),
    st.sampled_from([MAX_UNITS, MAX_UNITS - 1, MAX_UNITS // 2 + 1, 2**62]),
)
strings = st.sampled_from(["a0", "a1", "a2", "S0", "S1", "", "k1", "c1", "zz"])


def from_schema(schema) -> st.SearchStrategy:
    if isinstance(schema, list):
        return st.one_of(*(from_schema(branch) for branch in schema))
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return st.fixed_dictionaries(
                {f["name"]: from_schema(f["type"]) for f in schema["fields"]}
            )
        if kind == "enum":
            return st.sampled_from(schema["symbols"])
        return from_schema(kind)
    return {
        "long": longs,
        "int": st.integers(-(2**31), 2**31 - 1),
        "string": strings,
        "boolean": st.booleans(),
        "null": st.none(),
    }[schema]


RECORDS = {name: from_schema(CODEC.schemas[name]) for name in LEDGER_RECORDS}
any_record = st.sampled_from(LEDGER_RECORDS).flatmap(
    lambda name: RECORDS[name].map(lambda rec: (name, rec))
)


@functools.cache
def _warm_snapshot(seed: int) -> bytes:
    pipeline = Pipeline(1, project=False)
    random_session(pipeline, random.Random(seed), 400, accounts=3, symbols=2)
    return persist.dump(pipeline.ledgers()[0])


def warm_ledger(seed: int) -> Ledger:
    """A ledger partition after a short seeded session (open orders, positions), fresh each time."""
    return persist.load(_warm_snapshot(seed), 0, 1)


def aimed_at(ledger, data) -> tuple[str, dict]:
    """A settlement for one of the ledger's open orders, with arbitrary amounts."""
    order = data.draw(st.sampled_from(sorted(ledger.orders.values(), key=lambda o: o.id)))
    name = data.draw(st.sampled_from(["Fill", "OrderClosed", "OrderReduced", "MatchRejected"]))
    name = "marketlog.ledger." + name
    record = data.draw(RECORDS[name])
    record["order_id"], record["symbol"] = order.id, order.symbol
    if "side" in record:
        record["side"] = "BUY" if order.buy else "SELL"
    if name.endswith("MatchRejected") and data.draw(st.booleans()):
        record["new_order_id"] = data.draw(st.sampled_from(sorted(ledger.orders)))
    return name, record


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 3), steps=st.integers(1, 40), data=st.data())
def test_any_record_leaves_a_consistent_ledger_and_encodable_decisions(seed, steps, data):
    ledger = warm_ledger(seed)
    for _ in range(steps):
        aim = ledger.orders and data.draw(st.booleans())
        name, record = aimed_at(ledger, data) if aim else data.draw(any_record)
        for decision in ledger.apply(name, record):
            # raises if a value leaves its type
            CODEC.encode(record_name(decision), as_record(decision))
        assert partition_problems(ledger) == []


def test_every_ledger_record_has_a_handler():
    from services.ledger.state import Ledger

    assert [name for name in LEDGER_RECORDS if not Ledger().handles(name)] == []
