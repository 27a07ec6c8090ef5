"""The projector's pure core: events -> folded row changes, checked against what the real
ledger and matcher hold after a history they wrote (testkit.history)."""

from __future__ import annotations

import copy
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import Codec
from services.projector import rows
from services.projector.rows import ACCOUNT, Event
from testkit import history
from testkit.invariants import projection_vs_cores
from testkit.projection import Tables

HISTORY = history.random_history(3000, seed=5, accounts=12, symbols=3)


def events_of(ex: history.Market) -> list[Event]:
    return list(history.as_events(ex.events))


def build(events: list[Event], cuts: list[int]) -> Tables:
    """The tables the store would hold after the events, folded in batches cut at `cuts`."""
    tables = Tables()
    edges = [0, *sorted(set(cuts)), len(events)]
    for start, end in itertools.pairwise(edges):
        tables.apply(rows.fold(events[start:end]))
    return tables


def test_one_batch_matches_what_the_ledger_and_the_matcher_hold():
    tables = build(events_of(HISTORY), [])
    assert tables.problems == []
    assert projection_vs_cores(HISTORY.pipeline, tables) == []
    for row in tables.orders.values():
        assert row[6] == row[13] + row[14] + row[16] + row[18]  # qty = open+exec+cancel+reduce


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(HISTORY.events) - 1), max_size=12))
def test_any_batching_gives_the_same_rows(cuts):
    events = events_of(HISTORY)
    whole, split = build(events, []), build(events, cuts)
    assert split == whole and split.problems == whole.problems == []


def test_every_account_event_is_audited_once_with_its_command():
    batch = rows.fold(events_of(HISTORY))
    # OrderPlaced only tells gateways when to answer: the audit log leaves it out
    account_events = [e for e in HISTORY.events if e[0] == ACCOUNT and e[2] != history.PLACED]
    assert len(batch.audit) == len(account_events)
    kinds = {(row[5], row[4], row[6]) for row in batch.audit}
    assert ("AccountCreated", "CreateAccount", rows.CASH) in kinds
    assert ("OrderFilled", "Fill", rows.SYSTEM) in kinds
    assert ("OrderClosed", "CancelOrder", rows.SYSTEM) in kinds
    assert ("CommandRejected", "CancelOrder", rows.ERROR) in kinds
    for row in batch.audit:
        assert row[3].startswith("c") and row[2] > 0  # command id, record time


def test_worked_example_fills_at_the_resting_price_with_the_buyers_refund():
    ex = history.Market()
    ex.create_symbol("X")
    ex.create_account("b", 10**12)
    ex.create_account("s", 0)
    ex.issue("s", "X", 100_000)
    resting = ex.place("s", "X", "SELL", 20_000, 1_270_000)
    taker = ex.place("b", "X", "BUY", 20_000, 1_300_000)
    batch = rows.fold(events_of(ex))
    assert [(e[0], e[5], e[6], e[7]) for e in batch.executions] == [
        (resting, 1_270_000, 20_000, "MAKER"),
        (taker, 1_270_000, 20_000, "TAKER"),
    ]
    assert batch.balances["b"].available == 10**12 - 1_270_000 * 20_000  # 3 back per share
    assert batch.balances["b"].held == 0
    assert batch.balances["s"].available == 1_270_000 * 20_000
    assert batch.levels == {("X", "SELL", 1_270_000): [0, 2]}  # rested, then traded away
    assert batch.books == {"X": [1, 2, batch.books["X"][2]]}
    new = {row[0]: row for row in batch.new_orders()}
    assert new[taker][13:16] == (0, 20_000, 1_270_000 * 20_000) and new[taker][20] == 0


def test_a_duplicate_acceptance_changes_nothing_but_the_audit_log():
    ex = history.Market()
    ex.create_symbol("X")
    ex.create_account("b", 10**12)
    ex.place("b", "X", "BUY", 100, 10_000, client_order_id="k")
    again = copy.deepcopy(next(e for e in ex.events if e[2].endswith("OrderAccepted")))
    again[3]["duplicate"] = True
    batch = rows.fold(events_of(ex))
    twice = rows.fold([*events_of(ex), Event(ACCOUNT, 0, 99, again[2], again[3])])
    assert twice.new_orders() == batch.new_orders()
    assert len(twice.audit) == len(batch.audit) + 1
    assert twice.audit[-1][15] == "duplicate"


def test_an_unknown_decision_is_audited_not_dropped():
    record = {"envelope": {"command_id": "c9", "key": "a", "ts": 5, "reply_to": ""}, "amount": 7}
    batch = rows.fold([Event(ACCOUNT, 1, 4, "marketlog.account.SomethingNew", record)])
    assert batch.unknown == 1
    where = (1, 4, 5, "c9", "SomethingNew", "SomethingNew", rows.SYSTEM, "a")
    assert batch.audit == [(*where, None, None, None, None, None, 7, None, None)]


def test_synthetic_history_encodes_with_the_released_schemas():
    codec = Codec()
    for stream, key, value in history.encode(HISTORY.events[:500], codec):
        name, record = codec.decode(value)
        assert name.startswith(f"marketlog.{stream}.") and record["envelope"]["key"] == key


def test_a_reduce_that_leaves_nothing_open_is_a_cancel_of_the_rest():
    ex = history.Market()
    ex.create_symbol("X")
    ex.create_account("b", 10**12)
    oid = ex.place("b", "X", "BUY", 300, 10_000)
    ex.reduce("b", oid, 100)
    env = {"command_id": "c99", "key": "b", "ts": ex.ts + 1, "reply_to": ""}
    last = {
        "envelope": env, "order_id": oid, "symbol": "X", "side": "BUY", "qty": 200,
        "remaining": 0, "released": 2_000_000, "hold": 0, "cash_available": 10**12,
        "cash_held": 0, "shares_available": 0, "shares_held": 0,
    }  # fmt: skip
    events = [*events_of(ex), Event(ACCOUNT, 0, 99, "marketlog.account.OrderReduced", last)]
    [row] = rows.fold(events).new_orders()
    open_qty, _, _, cancelled, cancelled_ts, reduced, reason, hold = row[13:21]
    assert (open_qty, cancelled, cancelled_ts, reduced, reason, hold) == (
        0, 200, ex.ts + 1, 100, "USER", 0,
    )  # fmt: skip


def test_an_orders_hold_is_copied_from_the_ledgers_decisions_never_re_derived():
    ex = history.Market()
    ex.create_symbol("X")
    ex.create_account("b", 10**12)
    oid = ex.place("b", "X", "BUY", 300, 10_000)  # holds 3,000,000
    env = {"command_id": "c99", "key": "b", "ts": ex.ts + 1, "reply_to": ""}
    fill = {
        "envelope": env, "order_id": oid, "symbol": "X", "side": "BUY", "price": 9_000,
        "qty": 100, "remaining": 200, "seq": 9, "role": "MAKER", "released": 123, "hold": 4567,
        "cash_available": 1, "cash_held": 4567, "shares_available": 100, "shares_held": 0,
    }  # fmt: skip
    stated = Event(ACCOUNT, 0, 99, "marketlog.account.OrderFilled", fill)
    [row] = rows.fold([*events_of(ex), stated]).new_orders()
    assert row[20] == 4567  # whatever the ledger says, not limit x open quantity
    update = rows.fold([stated]).order_updates()
    assert [(u[0], u[8]) for u in update] == [(oid, 4567)]
    # a fill written before the ledger stated holds: the hold stays as last stated
    older = Event(ACCOUNT, 0, 100, stated.name, {**fill, "released": None, "hold": None})
    [row] = rows.fold([*events_of(ex), older]).new_orders()
    assert row[20] == 300 * 10_000


def test_a_candle_row_is_its_newest_update_whatever_the_delivery_order():
    def update(seq: int, close: int) -> Event:
        env = {"command_id": f"ABC:{seq}", "key": "ABC", "ts": 1, "reply_to": ""}
        record = {"envelope": env, "seq": seq, "interval": "1m", "start": 60_000, "open": 1,
                  "high": 9, "low": 1, "close": close, "volume": seq, "notional": 5, "vwap": 2,
                  "trades": seq, "volume_24h": seq}  # fmt: skip
        return Event(rows.ANALYTICS, 0, seq, rows.CANDLE, record)

    batch = rows.fold([update(3, 7), update(5, 8), update(4, 6), update(5, 8)])
    assert batch.candles == {
        ("ABC", "1m", 60_000): ("ABC", "1m", 60_000, 1, 9, 1, 8, 5, 5, 2, 5, 5, 5)
    }
    assert batch.unknown == 0 and not batch.trades and not batch.books
