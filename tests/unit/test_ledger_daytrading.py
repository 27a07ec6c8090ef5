"""The ledger's day-trading core (services/ledger/trading.py) against docs/daytrading.md: every
command and error code, the expiry sweep, triggers, the decisions' fields, snapshots, conservation
on random sequences, and the independent reference model (tests/daytrading_reference.py) fed the
same commands, record times, quotes and ticks, down to every user's final state."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import workload
from services.common.codec import Codec
from services.common.config import ROOT
from services.ledger import persist
from services.ledger.service import Wire, as_record, record_name
from services.ledger.state import Ledger
from services.ledger.trading import MAX_PENDING, WINDOW_US, cost_of, whole_shares
from testkit import records as r
from testkit.audit import conservation_problems, partition_problems
from tests import daytrading_reference as ref

T0 = 1_700_000_000_000_000  # µs
SECOND = 1_000_000
CENT_CASH, CENT_PRICE = 10_000, 100  # cash units and price units per cent
WORKLOADS = ROOT / "tests" / "data" / "seng468" / "workloads"
CODEC = Codec()
WIRE = Wire(CODEC)


def cash(text: str) -> int:
    return int(Decimal(text) * 100) * CENT_CASH


def px(text: str) -> int:
    return int(Decimal(text) * 100) * CENT_PRICE


class Desk:
    """One ledger partition driven with day-trading commands; prices set by hand per symbol;
    the clock moves 1 s per record unless told otherwise. Every step checks the invariants and
    that every decision encodes and decodes to itself."""

    def __init__(self, partition: int = 0, partitions: int = 1) -> None:
        self.ledger = Ledger(partition, partitions)
        self.now = T0
        self.count = 0
        self.prices: dict[str, int] = {"ABC": px("10.00"), "XYZ": px("2.50"), "S": px("12.34")}

    def env(self, key: str, after: int = SECOND) -> dict:
        self.now += after
        self.count += 1
        return r.envelope(f"c{self.count}", key, self.now, "gw")

    def send(self, command: r.Command) -> list[tuple[str, dict]]:
        answers = []
        for decision in self.ledger.apply(*command):
            record = as_record(decision)
            name = record_name(decision)
            assert CODEC.decode(WIRE.encode(decision)) == (name, record)
            answers.append((name.rsplit(".", 1)[1], record))
        assert partition_problems(self.ledger) == []
        assert conservation_problems([self.ledger]) == []
        return answers

    def do(
        self, command: str, user: str = "u", after: int = SECOND, **fields
    ) -> list[tuple[str, dict]]:
        fields.setdefault("txn", self.count + 1)
        if command in ("QUOTE", "BUY", "SELL") and "quote" not in fields:
            symbol = fields["symbol"]
            fields["quote"] = r.quote(symbol, self.prices[symbol], user, self.now // 1000)
        return self.send(r.day_trade(self.env(user, after), command, **fields))

    def decided(self, command: str, user: str = "u", after: int = SECOND, **fields) -> dict:
        answers = self.do(command, user, after, **fields)
        kind, record = answers[-1]
        assert kind == "DayTradeDecided" and record["command"] == command
        return record

    def ok(self, command: str, user: str = "u", after: int = SECOND, **fields) -> dict:
        record = self.decided(command, user, after, **fields)
        assert record["ok"] and record["code"] == record["message"] == "", record
        return record

    def err(self, command: str, user: str = "u", after: int = SECOND, **fields) -> str:
        record = self.decided(command, user, after, **fields)
        assert not record["ok"] and record["message"], record
        return record["code"]

    def tick(self, symbol: str, price: int, after: int = SECOND) -> list[tuple[str, dict]]:
        return self.send(r.quote_tick(self.env(symbol, after), r.quote(symbol, price)))

    def trader(self, user: str = "u"):
        return self.ledger.traders[user]

    def account(self, user: str = "u"):
        return self.ledger.accounts[user]

    def buy_shares(self, symbol: str, amount: str, user: str = "u") -> None:
        self.ok("BUY", user, symbol=symbol, amount=cash(amount))
        self.ok("COMMIT_BUY", user)


@pytest.fixture
def s() -> Desk:
    desk = Desk()
    desk.ok("ADD", amount=cash("1000.00"))
    return desk


# -- the units -------------------------------------------------------------------------------------
def test_whole_shares_times_price_is_exact_cash():
    # one cent = 10,000 cash units = 100 price units; a whole share is 100 quantity units
    assert cost_of(1, px("0.01")) == cash("0.01")
    assert cost_of(3, px("12.34")) == cash("37.02")
    assert whole_shares(cash("37.01"), px("12.34")) == 2
    assert whole_shares(cash("37.02"), px("12.34")) == 3


# -- ADD, QUOTE, DUMPLOG, unknown users ------------------------------------------------------------
def test_add_creates_a_ledger_account_without_an_api_key():
    desk = Desk()
    answers = desk.do("ADD", amount=cash("100.00"))
    assert [kind for kind, _ in answers] == ["DayTradeDecided"]  # no AccountCreated
    record = answers[0][1]
    assert record["envelope"]["key"] == "u" and record["user"] == "u"
    assert (record["cash_change"], record["cash"], record["held"]) == (
        cash("100.00"),
        cash("100.00"),
        0,
    )
    assert desk.ok("ADD", amount=cash("0.50"))["cash"] == cash("100.50")
    assert desk.ledger.cash_supply == cash("100.50")
    # the account is the exchange's account: CreateAccount of the same id is refused
    answers = desk.send(r.create_account(desk.env("u"), 0))
    assert answers[0][1]["reason"] == "account already exists"


def test_add_past_the_partitions_cash_limit_is_refused_and_creates_nothing():
    desk = Desk()
    desk.ledger.supply_limit = cash("150.00")
    desk.ok("ADD", "a", amount=cash("100.00"))
    assert desk.err("ADD", "a", amount=cash("50.01")) == "cash_limit"
    assert desk.err("ADD", "b", amount=cash("50.01")) == "cash_limit"
    assert "b" not in desk.ledger.accounts
    desk.ok("ADD", "b", amount=cash("50.00"))
    # deposits on the exchange side count against the same limit
    answers = desk.send(r.deposit(desk.env("a"), 1))
    assert answers[0][0] == "CommandRejected"


COMMANDS_NEEDING_THE_USER = [
    ("BUY", {"symbol": "ABC", "amount": cash("10.00")}),
    ("SELL", {"symbol": "ABC", "amount": cash("10.00")}),
    ("COMMIT_BUY", {}),
    ("CANCEL_BUY", {}),
    ("COMMIT_SELL", {}),
    ("CANCEL_SELL", {}),
    ("SET_BUY_AMOUNT", {"symbol": "ABC", "amount": cash("10.00")}),
    ("SET_BUY_TRIGGER", {"symbol": "ABC", "trigger": px("10.00")}),
    ("CANCEL_SET_BUY", {"symbol": "ABC"}),
    ("SET_SELL_AMOUNT", {"symbol": "ABC", "amount": cash("10.00")}),
    ("SET_SELL_TRIGGER", {"symbol": "ABC", "trigger": px("10.00")}),
    ("CANCEL_SET_SELL", {"symbol": "ABC"}),
    ("DISPLAY_SUMMARY", {}),
    ("DUMPLOG", {"filename": "out.xml"}),
]


@pytest.mark.parametrize(("command", "fields"), COMMANDS_NEEDING_THE_USER, ids=lambda c: str(c))
def test_every_command_but_add_quote_and_admin_dumplog_needs_the_account(command, fields):
    desk = Desk()
    record = desk.decided(command, "nobody", **fields)
    assert (record["ok"], record["code"], record["message"]) == (
        False,
        "unknown_user",
        "unknown user nobody",
    )
    assert (record["cash"], record["held"], record["cash_change"]) == (0, 0, 0)
    assert desk.ledger.accounts == {} and desk.ledger.traders == {}


def test_quote_needs_no_account_and_answers_the_logged_price():
    desk = Desk()
    record = desk.ok("QUOTE", "nobody", symbol="ABC")
    assert record["price"] == px("10.00") and record["quote"]["symbol"] == "ABC"
    assert desk.ledger.accounts == {}


def test_admin_dumplog_needs_no_account_user_dumplog_does():
    desk = Desk()
    record = desk.ok("DUMPLOG", "", filename="./testLOG")
    assert record["envelope"]["key"] == "" and record["user"] == ""
    assert record["filename"] == "./testLOG"
    desk.ok("ADD", amount=cash("1.00"))
    before = persist.dump(desk.ledger)
    assert desk.ok("DUMPLOG", filename="out.dump")["filename"] == "out.dump"
    assert persist.dump(desk.ledger) == before  # neither form changes state


def test_an_exchange_account_trades_with_the_same_cash():
    desk = Desk()
    desk.send(r.create_account(desk.env("12345"), cash("100.00")))
    desk.ok("BUY", "12345", symbol="ABC", amount=cash("95.00"))  # holds 90.00
    assert (desk.account("12345").cash, desk.account("12345").held) == (
        cash("10.00"),
        cash("90.00"),
    )
    desk.send(r.create_symbol(desk.env("ABC"), 100, 100))
    answers = desk.send(r.place_order(desk.env("12345"), "ABC", "BUY", 100, px("20.00")))
    assert answers[0][1]["reason"].startswith("insufficient funds")
    # day-trading shares are not exchange shares
    desk.ok("COMMIT_BUY", "12345")
    answers = desk.send(r.place_order(desk.env("12345"), "ABC", "SELL", 100, px("20.00")))
    assert answers[0][1]["reason"].startswith("insufficient shares")


# -- BUY and its COMMIT/CANCEL ---------------------------------------------------------------------
def test_buy_holds_the_cost_of_whole_shares_only(s):
    record = s.ok("BUY", symbol="ABC", amount=cash("25.00"))
    assert (record["shares"], record["price"], record["funds"]) == (2, px("10.00"), cash("20.00"))
    assert (record["cash_change"], record["cash"], record["held"]) == (
        -cash("20.00"),
        cash("980.00"),
        cash("20.00"),
    )
    assert record["amount"] == cash("25.00") and record["quote"]["price"] == px("10.00")


def test_buy_errors(s):
    assert s.err("BUY", symbol="ABC", amount=cash("9.99")) == "no_whole_share"
    s.prices["ABC"] = px("600.00")
    assert s.err("BUY", symbol="ABC", amount=cash("1300.00")) == "insufficient_funds"
    s.ok("BUY", symbol="ABC", amount=cash("1199.99"))  # the cost (600.00) is what is checked
    s.prices["ABC"] = px("0.01")
    for _ in range(MAX_PENDING - 1):
        s.ok("BUY", symbol="ABC", amount=cash("0.01"), after=1)
    assert s.err("BUY", symbol="ABC", amount=cash("0.01"), after=1) == "too_many_pending"


def test_commit_buy_turns_the_hold_into_shares_and_names_the_entry(s):
    s.ok("BUY", symbol="ABC", amount=cash("25.00"))
    record = s.ok("COMMIT_BUY")
    assert (record["symbol"], record["shares"], record["price"], record["funds"]) == (
        "ABC",
        2,
        px("10.00"),
        cash("20.00"),
    )
    assert (record["cash_change"], record["cash"], record["held"]) == (0, cash("980.00"), 0)
    assert s.trader().holdings == {"ABC": 2}
    assert s.ledger.paid_to_market == cash("20.00") and s.ledger.market_shares == {"ABC": 2}
    assert s.err("COMMIT_BUY") == "no_pending_buy"


def test_cancel_buy_gives_the_hold_back(s):
    s.ok("BUY", symbol="XYZ", amount=cash("10.00"))
    record = s.ok("CANCEL_BUY")
    assert (record["symbol"], record["shares"], record["cash_change"]) == ("XYZ", 4, cash("10.00"))
    assert (record["cash"], record["held"]) == (cash("1000.00"), 0)
    assert s.err("CANCEL_BUY") == "no_pending_buy"


def test_pending_buys_stack_most_recent_first(s):
    s.ok("BUY", symbol="ABC", amount=cash("10.00"))
    s.ok("BUY", symbol="XYZ", amount=cash("10.00"))
    assert s.ok("COMMIT_BUY")["symbol"] == "XYZ"
    assert s.ok("CANCEL_BUY")["symbol"] == "ABC"
    assert s.trader().holdings == {"XYZ": 4}


# -- the expiry sweep ------------------------------------------------------------------------------
def test_a_pending_buy_expires_after_60_seconds_of_record_time(s):
    s.ok("BUY", symbol="ABC", amount=cash("10.00"), txn=7)
    answers = s.do("DISPLAY_SUMMARY", after=WINDOW_US - 1)
    assert [kind for kind, _ in answers] == ["DayTradeDecided"]
    answers = s.do("COMMIT_BUY", after=1)
    assert [kind for kind, _ in answers] == ["PendingExpired", "DayTradeDecided"]
    expired = answers[0][1]
    assert expired["envelope"] == answers[1][1]["envelope"]  # the sweeping record's
    assert (expired["user"], expired["side"], expired["symbol"], expired["txn"]) == (
        "u",
        "BUY",
        "ABC",
        7,
    )
    assert (expired["shares"], expired["price"], expired["funds"]) == (
        1,
        px("10.00"),
        cash("10.00"),
    )
    assert (expired["cash_change"], expired["cash"], expired["held"]) == (
        cash("10.00"),
        cash("1000.00"),
        0,
    )
    assert answers[1][1]["code"] == "no_pending_buy"  # released, never committed


def test_only_the_users_own_records_sweep(s):
    s.ok("ADD", "v", amount=cash("1.00"))
    s.ok("BUY", symbol="ABC", amount=cash("10.00"))
    s.ok("QUOTE", "v", symbol="ABC", after=2 * WINDOW_US)
    s.tick("ABC", px("1.00"))  # no trigger armed: nobody is swept
    assert len(s.trader().buys) == 1 and s.account().held == cash("10.00")
    answers = s.do("QUOTE", symbol="ABC")
    assert [kind for kind, _ in answers] == ["PendingExpired", "DayTradeDecided"]


def test_expired_holds_are_released_before_the_checks(s):
    s.ok("BUY", symbol="ABC", amount=cash("1000.00"))
    assert s.err("BUY", symbol="ABC", amount=cash("10.00")) == "insufficient_funds"
    s.ok("BUY", symbol="ABC", amount=cash("1000.00"), after=WINDOW_US)


def test_an_expired_entry_under_a_live_one_goes_and_a_future_one_stays(s):
    s.ok("BUY", symbol="ABC", amount=cash("10.00"), txn=1)
    s.ok("BUY", symbol="XYZ", amount=cash("10.00"), txn=2, after=30 * SECOND)
    answers = s.do("DISPLAY_SUMMARY", after=30 * SECOND)
    assert [(k, rec.get("txn")) for k, rec in answers[:-1]] == [("PendingExpired", 1)]
    assert [e.txn for e in s.trader().buys] == [2]
    # a pending entry stamped after the record time counts as alive
    s.trader().buys[0].ts = s.now + 10 * WINDOW_US
    assert len(s.do("DISPLAY_SUMMARY", after=2 * WINDOW_US)) == 1


def test_an_expired_entry_above_a_live_one_goes_too(s):
    """Stack order is not time order when gateways' clocks differ: every entry is looked at."""
    s.ok("BUY", symbol="ABC", amount=cash("10.00"), txn=1)
    s.ok("BUY", symbol="XYZ", amount=cash("10.00"), txn=2)
    s.trader().buys[0].ts = s.now + 10 * WINDOW_US  # the older entry, stamped later
    answers = s.do("DISPLAY_SUMMARY", after=WINDOW_US)
    assert [(k, rec.get("txn")) for k, rec in answers[:-1]] == [("PendingExpired", 2)]
    assert [e.txn for e in s.trader().buys] == [1]


def test_an_expired_sell_gives_the_shares_back_with_no_cash_change(s):
    s.buy_shares("ABC", "50.00")
    s.ok("SELL", symbol="ABC", amount=cash("20.00"), txn=9)
    assert s.trader().holdings == {"ABC": 3}
    answers = s.do("ADD", amount=cash("1.00"), after=WINDOW_US)
    assert answers[0][0] == "PendingExpired"
    assert (answers[0][1]["side"], answers[0][1]["txn"], answers[0][1]["cash_change"]) == (
        "SELL",
        9,
        0,
    )
    assert s.trader().holdings == {"ABC": 5}


def test_an_error_keeps_its_sweep(s):
    s.ok("BUY", symbol="ABC", amount=cash("10.00"))
    answers = s.do("CANCEL_SET_BUY", symbol="ABC", after=WINDOW_US)
    assert [k for k, _ in answers] == ["PendingExpired", "DayTradeDecided"]
    assert answers[1][1]["code"] == "no_buy_amount"
    assert s.account().held == 0


# -- SELL and its COMMIT/CANCEL --------------------------------------------------------------------
def test_sell_sets_the_shares_aside_and_commit_pays(s):
    s.buy_shares("ABC", "50.00")
    s.prices["ABC"] = px("12.00")
    record = s.ok("SELL", symbol="ABC", amount=cash("30.00"))
    assert (record["shares"], record["price"], record["funds"], record["cash_change"]) == (
        2,
        px("12.00"),
        cash("24.00"),
        0,
    )
    assert s.trader().holdings == {"ABC": 3}
    record = s.ok("COMMIT_SELL")
    assert (record["symbol"], record["cash_change"], record["cash"]) == (
        "ABC",
        cash("24.00"),
        cash("974.00"),
    )
    assert s.ledger.received_from_market == cash("24.00") and s.ledger.market_shares == {"ABC": 3}
    assert s.err("COMMIT_SELL") == "no_pending_sell"


def test_sell_errors_and_cancel(s):
    assert s.err("SELL", symbol="ABC", amount=cash("10.00")) == "insufficient_shares"
    s.buy_shares("ABC", "20.00")
    assert s.err("SELL", symbol="ABC", amount=cash("9.99")) == "no_whole_share"
    assert s.err("SELL", symbol="ABC", amount=cash("30.00")) == "insufficient_shares"
    s.ok("SELL", symbol="ABC", amount=cash("20.00"))
    assert s.trader().holdings == {}
    record = s.ok("CANCEL_SELL")
    assert (record["symbol"], record["shares"], record["cash_change"]) == ("ABC", 2, 0)
    assert s.trader().holdings == {"ABC": 2}
    assert s.err("CANCEL_SELL") == "no_pending_sell"


def test_at_most_100_pending_sells(s):
    s.prices["ABC"] = px("0.01")
    s.buy_shares("ABC", "2.00")
    for _ in range(MAX_PENDING):
        s.ok("SELL", symbol="ABC", amount=cash("0.01"), after=1)
    assert s.err("SELL", symbol="ABC", amount=cash("0.01"), after=1) == "too_many_pending"


def test_commit_sell_past_the_cash_limit_is_refused(s):
    s.buy_shares("ABC", "10.00")
    s.ok("SELL", symbol="ABC", amount=cash("10.00"))
    s.ledger.supply_limit = s.ledger.cash_total()  # no room for the proceeds
    assert s.err("COMMIT_SELL") == "cash_limit"
    assert len(s.trader().sells) == 1


# -- buy settings ----------------------------------------------------------------------------------
def test_set_buy_amount_reserves_and_a_new_amount_replaces_it(s):
    record = s.ok("SET_BUY_AMOUNT", symbol="ABC", amount=cash("100.00"))
    assert (record["funds"], record["cash_change"], record["held"]) == (
        cash("100.00"),
        -cash("100.00"),
        cash("100.00"),
    )
    record = s.ok("SET_BUY_AMOUNT", symbol="ABC", amount=cash("40.00"))
    assert (record["cash_change"], record["cash"], record["held"]) == (
        cash("60.00"),
        cash("960.00"),
        cash("40.00"),
    )
    assert s.ok("SET_BUY_AMOUNT", symbol="ABC", amount=cash("40.00"))["cash_change"] == 0
    assert s.err("SET_BUY_AMOUNT", symbol="ABC", amount=cash("1000.01")) == "insufficient_funds"
    s.ok("SET_BUY_AMOUNT", symbol="ABC", amount=cash("1000.00"))  # the delta is what is checked


def test_set_buy_trigger(s):
    assert s.err("SET_BUY_TRIGGER", symbol="ABC", trigger=px("5.00")) == "no_buy_amount"
    s.ok("SET_BUY_AMOUNT", symbol="ABC", amount=cash("10.00"))
    assert s.err("SET_BUY_TRIGGER", symbol="ABC", trigger=px("10.01")) == "no_whole_share"
    record = s.ok("SET_BUY_TRIGGER", symbol="ABC", trigger=px("5.00"), txn=42)
    assert (record["price"], record["funds"], record["cash_change"]) == (
        px("5.00"),
        cash("10.00"),
        0,
    )
    s.ok("SET_BUY_TRIGGER", symbol="ABC", trigger=px("4.00"), txn=43)  # moves it
    setting = s.trader().buy_settings["ABC"]
    assert (setting.trigger, setting.txn) == (px("4.00"), 43)
    # an armed trigger stays armed; an amount that buys nothing at it is refused
    assert s.err("SET_BUY_AMOUNT", symbol="ABC", amount=cash("3.99")) == "no_whole_share"
    s.ok("SET_BUY_AMOUNT", symbol="ABC", amount=cash("8.00"))
    assert s.trader().buy_settings["ABC"].trigger == px("4.00")


def test_cancel_set_buy_restores_the_reserve(s):
    assert s.err("CANCEL_SET_BUY", symbol="ABC") == "no_buy_amount"
    s.ok("SET_BUY_AMOUNT", symbol="ABC", amount=cash("10.00"))
    s.ok("SET_BUY_TRIGGER", symbol="ABC", trigger=px("5.00"))
    record = s.ok("CANCEL_SET_BUY", symbol="ABC")
    assert (record["funds"], record["cash_change"], record["cash"], record["held"]) == (
        cash("10.00"),
        cash("10.00"),
        cash("1000.00"),
        0,
    )
    assert s.trader().buy_settings == {}
    assert [k for k, _ in s.tick("ABC", px("1.00"))] == ["QuoteTicked"]  # nothing armed


# -- sell settings ---------------------------------------------------------------------------------
def test_set_sell_amount_alone_reserves_nothing(s):
    record = s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("550.50"))
    assert (record["shares"], record["funds"]) == (0, cash("550.50"))
    assert s.tick("ABC", px("1000.00"))[1:] == []  # without a trigger it never fires


def test_set_sell_trigger_reserves_what_the_amount_sells_at_the_trigger(s):
    assert s.err("SET_SELL_TRIGGER", symbol="ABC", trigger=px("5.00")) == "no_sell_amount"
    s.buy_shares("ABC", "50.00")  # 5 shares
    s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("60.00"))
    assert s.err("SET_SELL_TRIGGER", symbol="ABC", trigger=px("60.01")) == "no_whole_share"
    assert s.err("SET_SELL_TRIGGER", symbol="ABC", trigger=px("10.00")) == "insufficient_shares"
    record = s.ok("SET_SELL_TRIGGER", symbol="ABC", trigger=px("15.00"))
    assert (record["shares"], record["price"], record["funds"]) == (4, px("15.00"), cash("60.00"))
    assert s.trader().holdings == {"ABC": 1}
    # armed: a new amount moves the reservation, checked against the holding
    assert s.err("SET_SELL_AMOUNT", symbol="ABC", amount=cash("90.00")) == "insufficient_shares"
    assert s.err("SET_SELL_AMOUNT", symbol="ABC", amount=cash("14.99")) == "no_whole_share"
    assert s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("75.00"))["shares"] == 5
    assert s.trader().holdings == {}
    assert s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("30.00"))["shares"] == 2
    assert s.trader().holdings == {"ABC": 3}
    # the trigger moved: the reservation follows it
    assert s.ok("SET_SELL_TRIGGER", symbol="ABC", trigger=px("10.00"))["shares"] == 3


def test_cancel_set_sell_returns_the_reserved_shares(s):
    assert s.err("CANCEL_SET_SELL", symbol="ABC") == "no_sell_amount"
    s.buy_shares("ABC", "50.00")
    s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("30.00"))
    s.ok("SET_SELL_TRIGGER", symbol="ABC", trigger=px("10.00"))
    record = s.ok("CANCEL_SET_SELL", symbol="ABC")
    assert (record["shares"], record["cash_change"]) == (3, 0)
    assert s.trader().holdings == {"ABC": 5} and s.trader().sell_settings == {}


# -- triggers --------------------------------------------------------------------------------------
def test_buy_trigger_fires_at_or_below_its_price_and_refunds_the_rest(s):
    s.ok("SET_BUY_AMOUNT", symbol="ABC", amount=cash("100.00"))
    s.ok("SET_BUY_TRIGGER", symbol="ABC", trigger=px("30.00"), txn=77)
    assert s.tick("ABC", px("30.01"))[1:] == []
    answers = s.tick("ABC", px("30.00"))
    assert [k for k, _ in answers] == ["QuoteTicked", "TriggerFired"]
    tick, fired = answers[0][1], answers[1][1]
    assert fired["envelope"] == {**tick["envelope"], "key": "u"}
    assert (fired["user"], fired["side"], fired["symbol"], fired["txn"]) == ("u", "BUY", "ABC", 77)
    assert (fired["shares"], fired["price"], fired["funds"]) == (3, px("30.00"), cash("90.00"))
    assert (fired["cash_change"], fired["cash"], fired["held"]) == (
        cash("10.00"),
        cash("910.00"),
        0,
    )
    assert s.trader().holdings == {"ABC": 3} and s.trader().buy_settings == {}
    assert s.tick("ABC", px("1.00"))[1:] == []  # one-shot


def test_sell_trigger_sells_exactly_the_reserved_shares_at_the_tick_price(s):
    s.buy_shares("ABC", "50.00")
    s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("40.00"))
    s.ok("SET_SELL_TRIGGER", symbol="ABC", trigger=px("20.00"), txn=5)
    assert s.tick("ABC", px("19.99"))[1:] == []
    fired = s.tick("ABC", px("25.00"))[1][1]
    assert (fired["side"], fired["shares"], fired["funds"], fired["cash_change"], fired["txn"]) == (
        "SELL",
        2,
        cash("50.00"),
        cash("50.00"),
        5,
    )
    assert s.trader().holdings == {"ABC": 3} and s.trader().sell_settings == {}


def test_a_tick_fires_users_in_byte_order_each_after_their_sweep(s):
    for user in ("b", "B", "a"):
        s.ok("ADD", user, amount=cash("100.00"))
        s.buy_shares("ABC", "10.00", user)
        s.ok("SET_BUY_AMOUNT", user, symbol="ABC", amount=cash("20.00"))
        s.ok("SET_BUY_TRIGGER", user, symbol="ABC", trigger=px("10.00"))
        s.ok("SET_SELL_AMOUNT", user, symbol="ABC", amount=cash("10.00"))
        s.ok("SET_SELL_TRIGGER", user, symbol="ABC", trigger=px("10.00"))
    s.ok("BUY", "a", symbol="XYZ", amount=cash("5.00"))
    answers = s.tick("ABC", px("10.00"), after=WINDOW_US)
    order = [(k, rec.get("user"), rec.get("side")) for k, rec in answers]
    assert order == [
        ("QuoteTicked", None, None),
        ("TriggerFired", "B", "BUY"),
        ("TriggerFired", "B", "SELL"),
        ("PendingExpired", "a", "BUY"),
        ("TriggerFired", "a", "BUY"),
        ("TriggerFired", "a", "SELL"),
        ("TriggerFired", "b", "BUY"),
        ("TriggerFired", "b", "SELL"),
    ]
    assert answers[3][1]["envelope"]["ts"] == answers[0][1]["envelope"]["ts"]


def test_only_partition_0_notes_the_tick_and_a_malformed_tick_does_nothing():
    desk = Desk(partition=1, partitions=2)
    assert desk.tick("ABC", px("1.00")) == []
    desk0 = Desk()
    assert [k for k, _ in desk0.tick("ABC", px("1.00"))] == ["QuoteTicked"]
    assert desk0.tick("ABC", 0) == []
    assert desk0.send(r.quote_tick(desk0.env("XYZ"), r.quote("ABC", px("1.00")))) == []


def test_a_sell_trigger_that_would_pass_the_cash_limit_does_not_fire(s):
    s.buy_shares("ABC", "10.00")
    s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("10.00"))
    s.ok("SET_SELL_TRIGGER", symbol="ABC", trigger=px("10.00"))
    s.ledger.supply_limit = s.ledger.cash_total()
    assert s.tick("ABC", px("10.00"))[1:] == []
    s.ledger.supply_limit += cash("10.00")
    assert s.tick("ABC", px("10.00"))[1][0] == "TriggerFired"


# -- DISPLAY_SUMMARY -------------------------------------------------------------------------------
def test_display_summary_is_the_state_after_the_sweep_as_canonical_json(s):
    s.buy_shares("ABC", "30.00")
    s.ok("BUY", symbol="XYZ", amount=cash("5.00"), txn=11)
    s.ok("BUY", symbol="ABC", amount=cash("10.00"), txn=12)
    s.ok("SELL", symbol="ABC", amount=cash("10.00"), txn=13)
    s.ok("SET_BUY_AMOUNT", symbol="S", amount=cash("50.00"))
    s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("20.00"))
    s.ok("SET_SELL_TRIGGER", symbol="ABC", trigger=px("10.00"))
    s.ok("SET_SELL_AMOUNT", symbol="XYZ", amount=cash("5.00"))
    record = s.ok("DISPLAY_SUMMARY")
    xyz, abc = s.trader().buys[0].ts, s.trader().buys[1].ts
    sold = s.trader().sells[0].ts
    expected = {
        "user": "u",
        "cash": cash("905.00"),
        "cash_held": cash("65.00"),
        "holdings": {},
        "pending_buys": [
            {"symbol": "ABC", "shares": 1, "price": px("10.00"), "cost": cash("10.00"),
             "txn": 12, "expires_ts": abc + WINDOW_US},
            {"symbol": "XYZ", "shares": 2, "price": px("2.50"), "cost": cash("5.00"),
             "txn": 11, "expires_ts": xyz + WINDOW_US},
        ],
        "pending_sells": [
            {"symbol": "ABC", "shares": 1, "price": px("10.00"), "proceeds": cash("10.00"),
             "txn": 13, "expires_ts": sold + WINDOW_US},
        ],
        "buy_settings": [{"symbol": "S", "amount": cash("50.00"), "trigger": None}],
        "sell_settings": [
            {"symbol": "ABC", "amount": cash("20.00"), "trigger": px("10.00"), "reserved": 2},
            {"symbol": "XYZ", "amount": cash("5.00"), "trigger": None, "reserved": 0},
        ],
    }  # fmt: skip
    assert json.loads(record["summary"]) == expected
    assert record["summary"] == json.dumps(expected, separators=(",", ":"))  # keys in order
    assert s.ok("QUOTE", symbol="ABC")["summary"] is None


# -- hostile records -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "fields"),
    [
        ("HELLO", {}),
        ("BUY", {"symbol": "ABC", "amount": cash("1.00"), "quote": None}),
        ("QUOTE", {"symbol": "ABC", "quote": r.quote("XYZ", px("1.00"))}),
        ("SELL", {"symbol": "ABC", "amount": cash("1.00"), "quote": r.quote("ABC", 0)}),
        ("ADD", {"amount": 0}),
        ("ADD", {}),
        ("SET_BUY_TRIGGER", {"symbol": "ABC", "trigger": -1}),
        ("CANCEL_SET_SELL", {"symbol": ""}),
        ("DUMPLOG", {}),
    ],
    ids=str,
)
def test_a_record_the_gateway_could_not_have_appended_is_bad_input(s, command, fields):
    s.ok("BUY", symbol="ABC", amount=cash("10.00"))
    before = persist.dump(s.ledger)
    answers = s.do(command, after=WINDOW_US, **fields)
    assert [k for k, _ in answers] == ["DayTradeDecided"]  # not even the sweep
    assert answers[0][1]["code"] == "bad_input"
    assert persist.dump(s.ledger) == before


def test_a_user_other_than_the_key_or_an_empty_one_is_bad_input(s):
    command = r.day_trade(s.env("u"), "ADD", amount=cash("1.00"))
    command[1]["user"] = "v"
    assert s.send(command)[0][1]["code"] == "bad_input"
    assert s.err("ADD", "", amount=cash("1.00")) == "bad_input"


# -- snapshots -------------------------------------------------------------------------------------
def test_the_trader_state_round_trips_through_a_snapshot(s):
    s.buy_shares("ABC", "50.00")
    s.ok("BUY", symbol="XYZ", amount=cash("5.00"))
    s.ok("SELL", symbol="ABC", amount=cash("10.00"))
    s.ok("SET_BUY_AMOUNT", symbol="S", amount=cash("50.00"))
    s.ok("SET_BUY_TRIGGER", symbol="S", trigger=px("12.00"))
    s.ok("SET_SELL_AMOUNT", symbol="ABC", amount=cash("20.00"))
    s.ok("SET_SELL_TRIGGER", symbol="ABC", trigger=px("10.00"))
    data = persist.dump(s.ledger)
    restored = persist.load(data, 0, 1)
    assert persist.dump(restored) == data
    assert persist.state_hash(restored) == persist.state_hash(s.ledger)
    # and it decides the same from there
    twin = Desk()
    twin.ledger, twin.now, twin.count = restored, s.now, s.count
    for desk in (s, twin):
        desk.tick("S", px("11.00"), after=WINDOW_US)
        desk.ok("DISPLAY_SUMMARY")
    assert persist.dump(twin.ledger) == persist.dump(s.ledger)


def test_a_version_1_snapshot_is_a_ledger_without_day_trading():
    desk = Desk()
    desk.send(r.create_account(desk.env("1"), 500))
    doc = json.loads(persist.dump(desk.ledger))
    for key in ("paid_to_market", "received_from_market", "market_shares", "traders"):
        del doc[key]
    doc["version"] = 1
    restored = persist.load(json.dumps(doc).encode(), 0, 1)
    assert persist.dump(restored) == persist.dump(desk.ledger)


# -- random sequences: conservation, snapshots, replay ---------------------------------------------
COMMAND_WORDS = sorted(workload.COMMANDS)


def random_record(rng: random.Random, desk: Desk, users: list[str]) -> r.Command:
    """A day-trading command, a tick or an exchange cash movement, with small random amounts."""
    roll, symbol = rng.random(), rng.choice(["A", "B", "CDE"])
    after = rng.choice([1, 1000, SECOND, 20 * SECOND])
    if roll < 0.1:
        price = rng.randint(100, 40_000) * CENT_PRICE
        return r.quote_tick(desk.env(symbol, after), r.quote(symbol, price))
    user = rng.choice(users)
    env = desk.env(user, after)
    if roll < 0.13:
        return r.deposit(env, rng.randint(1, 10**8))
    if roll < 0.16:
        return r.withdraw(env, rng.randint(1, 10**8))
    command = rng.choice(COMMAND_WORDS)
    money = rng.randint(1, 40_000)  # cents
    fields: dict = {"txn": desk.count}
    if workload.ARGS[command][:1] == ("symbol",):
        fields["symbol"] = symbol
    if "amount" in workload.ARGS[command]:
        fields["amount"] = money * CENT_CASH
    if "price" in workload.ARGS[command]:
        fields["trigger"] = money * CENT_PRICE
    if command == "DUMPLOG":
        fields["filename"] = "out"
    if command in ("QUOTE", "BUY", "SELL"):
        fields["quote"] = r.quote(symbol, rng.randint(100, 40_000) * CENT_PRICE, user)
    return r.day_trade(env, command, **fields)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), steps=st.integers(50, 400), cut=st.floats(0.0, 0.99))
def test_random_sessions_conserve_cash_and_shares_and_restore_from_a_snapshot(seed, steps, cut):
    rng = random.Random(seed)
    desk, users = Desk(), ["u1", "u2", "u3", "123"]
    desk.send(r.create_account(desk.env("123"), 10**9))
    log: list[r.Command] = []
    snapshot_at, snapshot = int(steps * cut), b""
    for step in range(steps):
        if step == snapshot_at:
            snapshot = persist.dump(desk.ledger)
        command = random_record(rng, desk, users)
        log.append(command)
        desk.send(command)  # checks no negative balance, the holds, conservation
    # the snapshot plus the rest of the log ends in the same state
    restored = persist.load(snapshot, 0, 1)
    for command in log[snapshot_at:]:
        restored.apply(*command)
    assert persist.dump(restored) == persist.dump(desk.ledger)
    # once every pending entry has expired, only the reserves are held
    for user in users:
        desk.do("DISPLAY_SUMMARY", user, after=WINDOW_US)
    for user, trader in desk.ledger.traders.items():
        assert trader.buys == trader.sells == []
        reserves = sum(b.reserve for b in trader.buy_settings.values())
        assert desk.account(user).held == reserves


# -- the reference model ---------------------------------------------------------------------------
def ledger_record(command: workload.Command, txn: int, env: dict, cents: int | None) -> r.Command:
    """The DayTrade a gateway appends for a parsed line (money from cents to ledger units)."""
    trigger = command.name in ("SET_BUY_TRIGGER", "SET_SELL_TRIGGER")
    amount = command.amount
    return r.day_trade(
        env,
        command.name,
        txn=command.txn or txn,
        symbol=command.symbol,
        amount=None if amount is None or trigger else amount * CENT_CASH,
        trigger=amount * CENT_PRICE if trigger else None,
        filename=command.filename,
        quote=None if cents is None else r.quote(command.symbol, cents * CENT_PRICE, env["key"]),
    )


class Both:
    """The ledger and the reference model fed the same lines, record times, quotes and ticks."""

    def __init__(self, quote) -> None:
        self.quote = quote
        self.ledger = Ledger()
        self.model = ref.Model(quote)
        self.count = 0
        self.decided: list[dict] = []
        self.fired: list[dict] = []
        self.expired = 0
        self.moves: list[tuple] = []  # (txn, user, cents) of every change of available cash

    def line(self, text: str, txn: int, now: int) -> None:
        outcome = self.model.apply(ref.parse_line(text), now)
        try:
            command = workload.parse_line(text)
        except workload.WorkloadError:
            assert outcome.code == "bad_input"  # refused by the gateway: nothing appended
            return
        user = command.user or ""
        cents = None
        if command.name in ("QUOTE", "BUY", "SELL"):
            cents = self.quote(command.symbol, user, now)
        env = r.envelope(f"c{txn}", user, now, "gw")
        out = self.apply(ledger_record(command, txn, env, cents))
        decided = out[-1]
        assert (decided["ok"], decided["code"] or None) == (outcome.ok, outcome.code), text
        self.decided.append(decided)

    def tick(self, symbol: str, cents: int, now: int) -> None:
        self.model.tick(ref.Tick(symbol, cents), now)
        env = r.envelope(f"t{now}", symbol, now, "ticker")
        answers = self.apply(r.quote_tick(env, r.quote(symbol, cents * CENT_PRICE)))
        self.fired += [rec for rec in answers if rec["_name"] == "TriggerFired"]

    def apply(self, command: r.Command) -> list[dict]:
        out = []
        for decision in self.ledger.apply(*command):
            record = as_record(decision)
            record["_name"] = record_name(decision).rsplit(".", 1)[1]
            self.expired += record["_name"] == "PendingExpired"
            if record.get("cash_change"):
                self.moves.append((record["txn"], record["user"], record["cash_change"]))
            out.append(record)
        return out

    def armed(self) -> list[str]:
        """Symbols with an armed trigger, as the system's ticker finds them."""
        armed = set()
        for t in self.ledger.traders.values():
            armed |= {s for s, b in t.buy_settings.items() if b.trigger}
            armed |= {s for s, b in t.sell_settings.items() if b.trigger}
        return sorted(armed)


def ledger_state(ledger: Ledger, user: str) -> dict:
    """A user's state in the reference model's shape (cents)."""
    acct, t = ledger.accounts[user], ledger.traders.get(user)

    def pending(entries) -> list[tuple]:
        return [
            (e.symbol, e.shares, e.price // CENT_PRICE, e.funds // CENT_CASH, e.ts, e.txn)
            for e in reversed(entries)
        ]

    buys = sorted(t.buy_settings.items()) if t else []
    sells = sorted(t.sell_settings.items()) if t else []
    return {
        "cash": acct.cash // CENT_CASH,
        "held": acct.held // CENT_CASH,
        "holdings": dict(sorted(t.holdings.items())) if t else {},
        "pending_buys": pending(t.buys) if t else [],
        "pending_sells": pending(t.sells) if t else [],
        "buy_reserves": {s: b.reserve // CENT_CASH for s, b in buys},
        "buy_triggers": {s: b.trigger // CENT_PRICE for s, b in buys if b.trigger is not None},
        "sell_amounts": {s: b.amount // CENT_CASH for s, b in sells},
        "sell_reserved": {s: b.reserved for s, b in sells},
        "sell_triggers": {s: b.trigger // CENT_PRICE for s, b in sells if b.trigger is not None},
    }


def assert_same(both: Both) -> None:
    model, ledger = both.model, both.ledger
    assert {u: ledger_state(ledger, u) for u in sorted(ledger.accounts)} == model.state()
    executions = [
        (f["txn"], f["user"], f["side"].lower(), f["symbol"], f["shares"],
         f["price"] // CENT_PRICE, f["funds"] // CENT_CASH)
        for f in both.fired
    ]  # fmt: skip
    assert executions == [tuple(vars(e).values()) for e in model.executions]
    journal = [(m.txn, m.user, m.cents if m.action == "add" else -m.cents) for m in model.movements]
    assert [(txn, user, change // CENT_CASH) for txn, user, change in both.moves] == journal
    model.check()
    assert partition_problems(ledger) == [] and conservation_problems([ledger]) == []


def replay(name: str, step_us: int, tick_every: int) -> Both:
    both = Both(ref.hashed_quote(name))
    now = T0
    lines = [line for line in (WORKLOADS / name).read_text().splitlines() if line.strip()]
    for number, text in enumerate(lines, 1):
        now += step_us
        both.line(text, number, now)
        if number % tick_every == 0:
            for symbol in both.armed():
                both.tick(symbol, both.quote(symbol, None, now + 7 * SECOND), now)
    return both


@pytest.mark.parametrize(
    ("name", "step_us", "tick_every"),
    [
        ("1userWorkLoad", 15 * SECOND, 3),
        ("10User_testWorkLoad", SECOND, 50),
        ("10User_testWorkLoad", 10_000, 50),
        ("2userWorkLoad.txt", 100_000, 20),
        ("45User_testWorkLoad", 100_000, 20),
    ],
)
def test_the_course_files_decide_as_the_reference_model(name, step_us, tick_every):
    """Every outcome, every user's final state, trigger executions and the cash journal agree.
    15 s per command in the small file and 1 s in the 10-user one, so pending entries expire."""
    both = replay(name, step_us, tick_every)
    assert_same(both)
    assert both.expired or step_us < SECOND
    assert both.fired or name == "1userWorkLoad"  # which arms no trigger
    codes = {d["code"] for d in both.decided}
    assert {"", "no_pending_buy", "no_pending_sell"} <= codes


@pytest.mark.parametrize("seed", range(12))
def test_random_lines_decide_as_the_reference_model(seed):
    rng = random.Random(seed)
    both = Both(ref.hashed_quote(str(seed)))
    now = T0
    users = ["u1", "u2", "u3"]
    for txn in range(1, 800):
        now += rng.choice([1, 1000, SECOND, 20 * SECOND])
        if rng.random() < 0.15:
            symbol = rng.choice(["A", "B", "CDE"])
            both.tick(symbol, rng.randint(100, 40_000), now)
        else:
            user, symbol = rng.choice(users), rng.choice(["A", "B", "CDE"])
            money = f"{rng.randint(1, 400)}.{rng.randint(0, 99):02d}"
            name = rng.choice(COMMAND_WORDS)
            args = {"ADD": [money], "QUOTE": [symbol], "BUY": [symbol, money],
                    "SELL": [symbol, money], "SET_BUY_AMOUNT": [symbol, money],
                    "SET_BUY_TRIGGER": [symbol, money], "SET_SELL_AMOUNT": [symbol, money],
                    "SET_SELL_TRIGGER": [symbol, money], "CANCEL_SET_BUY": [symbol],
                    "CANCEL_SET_SELL": [symbol], "DUMPLOG": ["out"]}.get(name, [])  # fmt: skip
            both.line(f"[{txn}] " + ",".join([name, user, *args]), txn, now)
    assert_same(both)


# -- extreme values ------------------------------------------------------------------------------
LONG = st.integers(-(2**63), 2**63 - 1)
EDGE = st.one_of(LONG, st.sampled_from([1, 100, 10_000, 2**62, 2**63 - 1, 0, -1]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([*COMMAND_WORDS, "TICK"]),
            st.sampled_from(["u", "v"]),
            EDGE,
            EDGE,
            st.integers(0, 2**40),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_any_64_bit_values_keep_every_balance_and_every_decision_in_range(steps):
    """Valid command words with any amounts, triggers, quote prices and record times: no
    exception, no broken invariant, every decision encodes (nothing leaves a 64-bit long)."""
    desk = Desk(partition=0, partitions=4)
    desk.ok("ADD", "u", amount=desk.ledger.supply_limit // 2)
    for command, user, money, price, after in steps:
        if command == "TICK":
            desk.send(r.quote_tick(desk.env("S", after), r.quote("S", price)))
            continue
        fields: dict = {"txn": 1, "symbol": "S", "filename": "f"}
        fields["trigger" if "TRIGGER" in command else "amount"] = money
        fields["quote"] = r.quote("S", price, user)
        desk.do(command, user, after, **fields)  # Desk.send checks and encodes
