"""Whole-exchange scenarios in memory (testkit.pipeline), each a bug the seeded simulation found,
spelled out with a delivery order chosen by hand."""

from __future__ import annotations

from testkit import records as r
from testkit.invariants import at_rest_problems
from testkit.pipeline import ACCOUNT_EVENTS, Pipeline
from testkit.simulation import Gateway

REJECTED = "marketlog.account.CommandRejected"


def opened(partitions: int = 1) -> tuple[Pipeline, Gateway]:
    pipeline = Pipeline(partitions)
    gw = Gateway(pipeline)
    gw.send(r.create_symbol(gw.envelope("X"), 1, 1))
    for account in ("a1", "a2", "a3"):
        gw.send(r.create_account(gw.envelope(account), 10**9))
        gw.send(r.issue_shares(gw.envelope(account), "X", 100))
    pipeline.drain()
    return pipeline, gw


def test_a_taker_decremented_before_it_rests_changes_no_book_level():
    pipeline, gw = opened()
    gw.send(r.place_order(gw.envelope("a1"), "X", "SELL", 4, 10))
    gw.send(r.place_order(gw.envelope("a1"), "X", "BUY", 10, 10, stp="DECREMENT_AND_CANCEL"))
    pipeline.drain()
    # the resting sell is cancelled (SELF_TRADE), the buy loses 4 before it rests with 6
    assert pipeline.projector.tables.levels == {("X", "BUY", 10): [6, 4]}
    assert at_rest_problems(pipeline) == []


def test_a_cancel_the_matcher_refuses_is_answered_as_a_cancel():
    """The matcher refuses a cancel (its order just filled) after expiring another order of the
    same ledger partition: the expiry carries the cancel's command id, yet it answers nothing."""
    pipeline, gw = opened()
    env = gw.envelope("a1")
    gw.send(r.place_order(env, "X", "BUY", 1, 5, tif="GTD", expire_ts=env["ts"] + 2500))
    gw.send(r.place_order(gw.envelope("a2"), "X", "SELL", 5, 10))
    pipeline.drain()
    gw.hear()
    (sell,) = [oid for account, oid, _ in gw.orders if account == "a2"]
    gw.send(r.place_order(gw.envelope("a3"), "X", "BUY", 5, 10))  # fills the sell
    gw.send(r.cancel_order(gw.envelope("a2"), sell))  # late enough to expire a1's order
    pipeline.ledger.step(0, 2)  # the ledger still sees the sell open: it forwards the cancel
    pipeline.matcher.step(0, 2)
    pipeline.drain()
    refused = [rec for _, _, name, rec in pipeline.records(ACCOUNT_EVENTS) if name == REJECTED]
    assert [(rec["command"], rec["order_id"]) for rec in refused] == [("CancelOrder", sell)]
    closed = [rec["reason"] for _, _, name, rec in pipeline.records(ACCOUNT_EVENTS)
              if name.endswith("OrderClosed")]  # fmt: skip
    assert closed == ["EXPIRED"]
    assert at_rest_problems(pipeline) == []
