"""Small readable scenarios, one per rule, on the pure core (prices and quantities in whole units
here for readability: the core only sees integers)."""

from __future__ import annotations

from services.matcher.state import BUY, SELL, Book
from tests.unit.reference_book import check_invariants

TS = 1_700_000_000_000_000


class Scenario:
    """A book plus helpers that keep the invariants checked after every command."""

    def __init__(self) -> None:
        self.book = Book("X")

    def _run(self, events):
        check_invariants(self.book)
        return events

    def place(self, oid, side, price, qty, account=None, ts=TS, **terms):
        account = account or f"a{oid}"
        return self._run(self.book.place(ts, oid, account, side, price, qty, **terms))

    def cancel(self, oid, account=None, ts=TS):
        return self._run(self.book.cancel(ts, oid, account))

    def reduce(self, oid, qty, ts=TS):
        return self._run(self.book.reduce(ts, oid, None, qty))

    def replace(self, oid, new_oid, price, qty, ts=TS):
        return self._run(self.book.replace(ts, oid, None, new_oid, price, qty))

    def bids(self):
        return [(o[3], o[0], o[1]) for o in self.book.resting(BUY)]  # (price, qty, id)

    def asks(self):
        return [(o[3], o[0], o[1]) for o in self.book.resting(SELL)]


def trades(events):
    """(price, qty, maker, taker) of each trade."""
    return [(e[3], e[4], e[5], e[7]) for e in events if e[0] == "trade"]


def cancels(events):
    """(order, qty, reason, was resting) of each cancel."""
    return [(e[3], e[7], e[8], e[9]) for e in events if e[0] == "cancelled"]


def test_course_worked_example():
    s = Scenario()
    for oid, side, price, qty in [
        (1, BUY, 125, 300),
        (2, SELL, 130, 100),
        (3, BUY, 127, 200),
        (4, SELL, 128, 500),
        (5, SELL, 140, 200),
        (6, BUY, 125, 400),
    ]:
        (rested,) = s.place(oid, side, price, qty)
        assert rested[0] == "rested"
    events = s.place(7, SELL, 124, 400)
    # 200 at 127 against order 3, then 200 at 125 against order 1 (it arrived before order 6)
    assert trades(events) == [(127, 200, 3, 7), (125, 200, 1, 7)]
    assert [(e[10], e[11]) for e in events] == [(0, 200), (100, 0)]  # both remainders
    assert s.bids() == [(125, 100, 1), (125, 400, 6)]  # order 1 kept its place
    assert [e[1] for e in events] == [7, 8]


def test_starter_kit_example():
    s = Scenario()
    s.place(1, BUY, 145, 100)
    s.place(2, BUY, 145, 200)
    s.place(3, BUY, 144, 300)
    events = s.place(4, SELL, 144, 350)
    assert [(p, q) for p, q, _, _ in trades(events)] == [(145, 100), (145, 200), (144, 50)]
    assert s.bids() == [(144, 250, 3)]  # public: bid 145 -> 0, bid 144 -> 250
    assert s.book.depth(BUY) == [(144, 250)]


def test_partly_filled_order_keeps_its_place():
    s = Scenario()
    s.place(1, SELL, 10, 100)
    s.place(2, SELL, 10, 100)
    s.place(3, BUY, 10, 30)
    assert s.asks() == [(10, 70, 1), (10, 100, 2)]


def test_trade_at_the_resting_price_and_rest_the_remainder():
    s = Scenario()
    s.place(1, SELL, 10, 100)
    events = s.place(2, BUY, 12, 150)
    assert trades(events) == [(10, 100, 1, 2)]
    assert events[-1][:8] == ("rested", 3, TS, 2, "a2", BUY, 12, 50)


def test_ioc_cancels_its_remainder():
    s = Scenario()
    s.place(1, SELL, 10, 100)
    events = s.place(2, BUY, 10, 150, tif="IOC")
    assert trades(events) == [(10, 100, 1, 2)]
    assert cancels(events) == [(2, 50, "IOC_REMAINDER", False)]
    assert s.bids() == [] and s.asks() == []


def test_fok_all_or_nothing():
    s = Scenario()
    s.place(1, SELL, 10, 100)
    s.place(2, SELL, 11, 100)
    assert cancels(s.place(3, BUY, 11, 250, tif="FOK")) == [(3, 250, "FOK_UNFILLABLE", False)]
    assert s.asks() == [(10, 100, 1), (11, 100, 2)]  # untouched
    assert trades(s.place(4, BUY, 11, 200, tif="FOK")) == [(10, 100, 1, 4), (11, 100, 2, 4)]


def test_market_sell_takes_any_price_and_never_rests():
    s = Scenario()
    s.place(1, BUY, 10, 100)
    s.place(2, BUY, 5, 100)
    events = s.place(3, SELL, None, 300)
    assert trades(events) == [(10, 100, 1, 3), (5, 100, 2, 3)]
    assert cancels(events) == [(3, 100, "IOC_REMAINDER", False)]
    assert events[-1][6] is None  # no price


def test_market_buy_stops_when_the_budget_cannot_pay_the_next_lot():
    s = Scenario()
    s.place(1, SELL, 10, 5)
    s.place(2, SELL, 12, 100)
    # budget 100: 5 at 10 (50 spent), then 50 // 12 = 4 -> rounded down to the lot of 3 -> 3 at 12
    events = s.place(3, BUY, None, 1000, budget=100, lot=3)
    assert trades(events) == [(10, 5, 1, 3), (12, 3, 2, 3)]
    assert cancels(events) == [(3, 992, "IOC_REMAINDER", False)]


def test_post_only_is_cancelled_if_it_would_take():
    s = Scenario()
    s.place(1, SELL, 10, 100)
    assert cancels(s.place(2, BUY, 10, 50, post_only=True)) == [(2, 50, "POST_ONLY", False)]
    assert s.place(3, BUY, 9, 50, post_only=True)[0][0] == "rested"


def test_gtd_expires_by_record_time_before_the_next_command():
    s = Scenario()
    s.place(1, SELL, 10, 100, tif="GTD", expire_ts=TS + 60)
    s.place(2, SELL, 11, 100, tif="GTD", expire_ts=TS + 30)
    events = s.place(3, BUY, 11, 100, ts=TS + 60)
    # both expired (earliest expire_ts first) before order 3 arrived: it rests instead of trading
    assert cancels(events) == [(2, 100, "EXPIRED", True), (1, 100, "EXPIRED", True)]
    assert [e[2] for e in events] == [TS + 60] * 3
    assert events[-1][0] == "rested"
    gone = s.place(4, SELL, 20, 1, tif="GTD", expire_ts=TS + 60, ts=TS + 60)
    assert cancels(gone) == [(4, 1, "EXPIRED", False)]


def test_cancel_and_unknown_cancel():
    s = Scenario()
    s.place(1, BUY, 10, 100)
    assert cancels(s.cancel(1)) == [(1, 100, "USER", True)]
    ((kind, seq, _, oid, _, _, _, _, why),) = s.cancel(1)
    assert (kind, seq, oid, why) == ("rejected", None, 1, "unknown order")
    s.place(2, BUY, 10, 100)
    assert s.cancel(2, account="someone else")[0][0] == "rejected"


def test_reduce_keeps_priority_and_to_zero_cancels():
    s = Scenario()
    s.place(1, SELL, 10, 100)
    s.place(2, SELL, 10, 100)
    (reduced,) = s.reduce(1, 60)
    assert reduced[0] == "reduced" and reduced[7:] == (60, 40, True)
    assert s.asks() == [(10, 40, 1), (10, 100, 2)]
    assert cancels(s.reduce(1, 40)) == [(1, 40, "USER", True)]


def test_replace_loses_priority_and_names_the_new_order_when_refused():
    s = Scenario()
    s.place(1, SELL, 10, 100)
    s.place(2, SELL, 10, 100)
    events = s.replace(1, 3, 10, 100)
    assert cancels(events) == [(1, 100, "REPLACED", True)]
    assert events[1][:4] == ("rested", 4, TS, 3)
    assert s.asks() == [(10, 100, 2), (10, 100, 3)]
    ((kind, _, _, oid, _, _, _, new_oid, why),) = s.replace(1, 4, 11, 10)
    assert (kind, oid, new_oid, why) == ("rejected", 1, 4, "unknown order")


def test_replace_can_trade_at_once():
    s = Scenario()
    s.place(1, BUY, 10, 100)
    s.place(2, SELL, 12, 100)
    assert trades(s.replace(1, 3, 12, 40)) == [(12, 40, 2, 3)]


def test_stp_cancel_newest():
    s = Scenario()
    s.place(1, SELL, 10, 100, account="me")
    events = s.place(2, BUY, 10, 50, account="me", stp="CANCEL_NEWEST")
    assert cancels(events) == [(2, 50, "SELF_TRADE", False)]
    assert s.asks() == [(10, 100, 1)]


def test_stp_cancel_oldest_then_trade_on():
    s = Scenario()
    s.place(1, SELL, 10, 100, account="me")
    s.place(2, SELL, 10, 100, account="you")
    events = s.place(3, BUY, 10, 50, account="me", stp="CANCEL_OLDEST")
    assert cancels(events) == [(1, 100, "SELF_TRADE", True)]
    assert trades(events) == [(10, 50, 2, 3)]


def test_stp_cancel_both():
    s = Scenario()
    s.place(1, SELL, 10, 100, account="me")
    events = s.place(2, BUY, 10, 50, account="me", stp="CANCEL_BOTH")
    assert cancels(events) == [(1, 100, "SELF_TRADE", True), (2, 50, "SELF_TRADE", False)]
    assert s.asks() == [] and s.bids() == []


def test_stp_decrement_and_cancel():
    s = Scenario()
    s.place(1, SELL, 10, 100, account="me")
    # taker smaller: the taker is cancelled, the resting order shrinks by 30 and keeps its place
    events = s.place(2, BUY, 10, 30, account="me", stp="DECREMENT_AND_CANCEL")
    assert [e[0] for e in events] == ["reduced", "cancelled"]
    assert events[0][3] == 1 and events[0][7:] == (30, 70, True)  # the resting one: on the book
    s.place(3, SELL, 10, 10, account="you")
    # taker larger: the resting order is cancelled, the taker shrinks by 70 and trades on
    events = s.place(4, BUY, 10, 100, account="me", stp="DECREMENT_AND_CANCEL")
    assert [e[0] for e in events] == ["cancelled", "reduced", "trade", "rested"]
    assert events[1][3] == 4 and events[1][7:] == (70, 30, False)  # the taker: not on the book
    assert s.bids() == [(10, 20, 4)]


def test_stp_none_lets_an_account_trade_with_itself():
    s = Scenario()
    s.place(1, SELL, 10, 100, account="me")
    assert trades(s.place(2, BUY, 10, 100, account="me")) == [(10, 100, 1, 2)]


def test_fok_feasibility_counts_self_trade_prevention():
    s = Scenario()
    s.place(1, SELL, 10, 100, account="me")
    s.place(2, SELL, 10, 100, account="you")
    # with cancel-oldest, only the other account's 100 count: 150 cannot fill, nothing happens
    events = s.place(3, BUY, 10, 150, account="me", stp="CANCEL_OLDEST", tif="FOK")
    assert cancels(events) == [(3, 150, "FOK_UNFILLABLE", False)]
    assert len(s.asks()) == 2
    events = s.place(4, BUY, 10, 100, account="me", stp="CANCEL_OLDEST", tif="FOK")
    assert cancels(events) == [(1, 100, "SELF_TRADE", True)] and trades(events) == [(10, 100, 2, 4)]


def test_invalid_placements_are_private_rejects():
    s = Scenario()
    s.place(1, BUY, 10, 100)
    for command, why in [
        ({"oid": 1, "price": 10, "qty": 5}, "duplicate order id"),
        ({"oid": 2, "price": 10, "qty": 0}, "quantity must be positive"),
        ({"oid": 3, "price": -1, "qty": 5}, "price must be positive"),
        ({"oid": 4, "price": 10, "qty": 5, "tif": "GTD"}, "GTD order needs expire_ts"),
    ]:
        ((kind, seq, *_, reason),) = s.place(side=BUY, **command)
        assert (kind, seq, reason) == ("rejected", None, why)
    assert s.book.seq == 1
