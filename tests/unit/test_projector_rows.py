"""The projector's pure core: events -> folded row changes, checked against an oracle exchange."""

from __future__ import annotations

import copy
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import Codec
from services.projector import rows, synth
from services.projector.rows import ACCOUNT, Event

HISTORY = synth.random_history(3000, seed=5, accounts=12, symbols=3)


def events_of(ex: synth.Exchange) -> list[Event]:
    return list(synth.as_events(ex.events))


class Model:
    """What the store's SQL does with a batch, in Python: enough to compare batchings."""

    def __init__(self) -> None:
        self.tables: dict[str, dict] = {
            k: {} for k in ("orders", "balances", "positions", "levels", "books", "stats")
        }
        self.appended: dict[str, list] = {k: [] for k in ("audit", "executions", "trades")}

    def apply(self, batch: rows.Batch) -> None:
        for name in self.appended:
            self.appended[name] += getattr(batch, name)
        orders = self.tables["orders"]
        for row in batch.new_orders():
            orders[row[0]] = list(row)
        for (
            oid,
            open_qty,
            ex_q,
            ex_n,
            c_q,
            c_ts,
            r_q,
            reason,
            released,
            ts,
        ) in batch.order_updates():
            o = orders[oid]
            side, price = o[4], o[5]
            took = rows.consumed_hold(side, price, ex_q, ex_n)
            o[13:22] = [
                open_qty, o[14] + ex_q, o[15] + ex_n, o[16] + c_q, c_ts or o[17],
                o[18] + r_q, reason or o[19], 0 if open_qty == 0 else o[20] - took - released, ts,
            ]  # fmt: skip
        for table, found in (("balances", batch.balances), ("positions", batch.positions)):
            for key, h in found.items():
                old = self.tables[table].get(key, [0, 0, 0, 0])
                held = old[1] if h.held is None else h.held
                self.tables[table][key] = [h.available, held, old[2] + h.added, old[3] + h.removed]
        for key, (delta, seq) in batch.levels.items():
            qty = self.tables["levels"].get(key, (0, 0))[0] + delta
            self.tables["levels"][key] = (qty, seq)
            if qty == 0:
                del self.tables["levels"][key]
        for symbol, (_, last, ts) in batch.books.items():
            self.tables["books"][symbol] = (last, ts)
        for symbol, s in batch.stats.items():
            old = self.tables["stats"].get(symbol)
            if old is not None:
                s = copy.copy(s)
                s.trades, s.volume = s.trades + old.trades, s.volume + old.volume
                s.notional += old.notional
                s.high, s.low = max(s.high, old.high), min(s.low, old.low)
            self.tables["stats"][symbol] = s


def build(events: list[Event], cuts: list[int]) -> Model:
    model = Model()
    edges = [0, *sorted(set(cuts)), len(events)]
    for start, end in itertools.pairwise(edges):
        model.apply(rows.fold(events[start:end]))
    return model


def test_one_batch_matches_the_oracle_exchange():
    model = build(events_of(HISTORY), [])
    balances = {a: v[:2] for a, v in model.tables["balances"].items()}
    assert balances == HISTORY.cash
    positions = {k: v[:2] for k, v in model.tables["positions"].items()}
    assert positions == {k: v for k, v in HISTORY.shares.items() if k in positions}
    assert all(v == [0, 0] for k, v in HISTORY.shares.items() if k not in positions)
    for oid, row in model.tables["orders"].items():
        live = HISTORY.orders.get(oid)
        open_qty, hold = row[13], row[20]
        assert (open_qty, hold) == ((live.remaining, live.hold) if live else (0, 0)), oid
        assert row[6] == open_qty + row[14] + row[16] + row[18]  # qty = open+exec+cancel+reduce
    for (symbol, side, price), (qty, _) in model.tables["levels"].items():
        resting = [
            o.remaining
            for o in HISTORY.orders.values()
            if (o.symbol, o.side, o.price) == (symbol, side, price) and o.resting
        ]
        assert qty == sum(resting) > 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(HISTORY.events) - 1), max_size=12))
def test_any_batching_gives_the_same_rows(cuts):
    events = events_of(HISTORY)
    whole, split = build(events, []), build(events, cuts)
    assert split.tables["orders"] == whole.tables["orders"]
    assert split.appended == whole.appended
    for name in ("balances", "positions", "levels", "books", "stats"):
        assert split.tables[name] == whole.tables[name], name


def test_every_account_event_is_audited_once_with_its_command():
    batch = rows.fold(events_of(HISTORY))
    account_events = [e for e in HISTORY.events if e[0] == ACCOUNT]
    assert len(batch.audit) == len(account_events)
    kinds = {(row[5], row[4], row[6]) for row in batch.audit}
    assert ("AccountCreated", "CreateAccount", rows.CASH) in kinds
    assert ("OrderFilled", "Fill", rows.SYSTEM) in kinds
    assert ("OrderClosed", "CancelOrder", rows.SYSTEM) in kinds
    assert ("CommandRejected", "CancelOrder", rows.ERROR) in kinds
    for row in batch.audit:
        assert row[3].startswith("c") and row[2] > 0  # command id, record time


def test_worked_example_fills_at_the_resting_price_with_the_buyers_refund():
    ex = synth.Exchange()
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
    ex = synth.Exchange()
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
    for stream, key, value in synth.encode(HISTORY.events[:500], codec):
        name, record = codec.decode(value)
        assert name.startswith(f"marketlog.{stream}.") and record["envelope"]["key"] == key


def test_a_reduce_that_leaves_nothing_open_is_a_cancel_of_the_rest():
    ex = synth.Exchange()
    ex.create_symbol("X")
    ex.create_account("b", 10**12)
    oid = ex.place("b", "X", "BUY", 300, 10_000)
    ex.reduce("b", oid, 100)
    env = {"command_id": "c99", "key": "b", "ts": ex.ts + 1, "reply_to": ""}
    last = {
        "envelope": env, "order_id": oid, "symbol": "X", "side": "BUY", "qty": 200,
        "remaining": 0, "released": 2_000_000, "cash_available": 10**12, "cash_held": 0,
        "shares_available": 0, "shares_held": 0,
    }  # fmt: skip
    events = [*events_of(ex), Event(ACCOUNT, 0, 99, "marketlog.account.OrderReduced", last)]
    [row] = rows.fold(events).new_orders()
    open_qty, _, _, cancelled, cancelled_ts, reduced, reason, hold = row[13:21]
    assert (open_qty, cancelled, cancelled_ts, reduced, reason, hold) == (
        0, 200, ex.ts + 1, 100, "USER", 0,
    )  # fmt: skip
