"""The ledger's rules, one readable scenario each (amounts in currency and shares, via money)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.common.money import CASH_SCALE, MAX_UNITS, PRICE_SCALE, QTY_SCALE
from services.ledger.decisions import EMITTED, MATCH_COMMANDS
from services.ledger.service import as_record, record_name
from services.ledger.state import Ledger
from testkit import records as r
from testkit.audit import conservation_problems, partition_problems


def _units(text: str | int, scale: int) -> int:
    units = Decimal(str(text)) * scale
    assert units == int(units), f"{text} is finer than 1/{scale}"
    return int(units)


def px(text: str | int) -> int:
    return _units(text, PRICE_SCALE)


def sh(text: str | int) -> int:
    return _units(text, QTY_SCALE)


def cash(text: str | int) -> int:
    return _units(text, CASH_SCALE)


TICK, LOT = px("0.01"), sh(1)


class Desk:
    """One ledger partition driven with readable commands; every answer as (kind, record)."""

    def __init__(self, partition: int = 0, partitions: int = 1) -> None:
        self.ledger = Ledger(partition, partitions)
        self.count = 0
        self.forwarded: list[tuple[str, dict]] = []  # what went to match.commands

    def env(self, key: str) -> dict:
        self.count += 1
        return r.envelope(f"cmd-{self.count}", key, 1_700_000_000_000_000 + self.count, "gw")

    def send(self, command: r.Command) -> list[tuple[str, dict]]:
        answers = []
        for decision in self.ledger.apply(*command):
            key, typed = decision
            kind = record_name(decision).rsplit(".", 1)[1]
            record = as_record(decision)
            assert record["envelope"]["key"] == key
            if EMITTED[type(typed)][0] == MATCH_COMMANDS:
                self.forwarded.append((kind, record))
            answers.append((kind, record))
        assert partition_problems(self.ledger) == []
        return answers

    def one(self, command: r.Command) -> tuple[str, dict]:
        answers = self.send(command)
        assert len(answers) == 1, answers
        return answers[0]

    # -- commands in exchange words ------------------------------------------------------------
    def open_account(self, account: str, balance: str = "0") -> tuple[str, dict]:
        return self.one(r.create_account(self.env(account), cash(balance)))

    def list_symbol(self, symbol: str = "X", tick: int = TICK, lot: int = LOT) -> list:
        return self.send(r.create_symbol(self.env(symbol), tick, lot))

    def issue(self, account: str, symbol: str, shares: str) -> tuple[str, dict]:
        return self.one(r.issue_shares(self.env(account), symbol, sh(shares)))

    def buy(self, account: str, shares: str, price: str | None, **extra) -> list:
        return self.send(
            r.place_order(self.env(account), "X", "BUY", sh(shares), _p(price), **extra)
        )

    def sell(self, account: str, shares: str, price: str | None, **extra) -> list:
        return self.send(
            r.place_order(self.env(account), "X", "SELL", sh(shares), _p(price), **extra)
        )

    def fill(self, account, order_id, side, shares, price, remaining, role="MAKER") -> tuple:
        env = r.envelope(f"match-{order_id}", account, 1, "")
        command = r.fill(env, order_id, "X", side, px(price), sh(shares), sh(remaining), 1, role)
        return self.one(command)

    def trade(self, maker, taker, shares: str, price: str) -> tuple[dict, dict]:
        """Both sides of one trade: maker and taker are (account, order_id, side, remaining)."""
        (m_acct, m_id, m_side, m_rem), (t_acct, t_id, t_side, t_rem) = maker, taker
        maker_fill = self.fill(m_acct, m_id, m_side, shares, price, m_rem, "MAKER")[1]
        taker_fill = self.fill(t_acct, t_id, t_side, shares, price, t_rem, "TAKER")[1]
        return maker_fill, taker_fill

    def account(self, account: str):
        return self.ledger.accounts[account]

    def position(self, account: str, symbol: str = "X"):
        return self.ledger.accounts[account].positions[symbol]


def _p(price: str | None) -> int | None:
    return None if price is None else px(price)


def accepted_id(answers: list) -> int:
    kind, record = answers[0]
    assert kind == "OrderAccepted", answers
    return record["order_id"]


def refusal(answers: list) -> str:
    assert len(answers) == 1 and answers[0][0] == "CommandRejected", answers
    return answers[0][1]["reason"]


@pytest.fixture
def desk() -> Desk:
    d = Desk()
    d.list_symbol("X")
    return d


# -- the course worked example (notes/protocols.md §1) --
def test_worked_example_holds_fills_and_proceeds(desk):
    desk.open_account("alice", "200000")
    desk.open_account("bob")
    desk.open_account("carol")
    desk.issue("bob", "X", "1000")
    desk.issue("carol", "X", "400")
    ids = [
        accepted_id(desk.buy("alice", "300", "125")),
        accepted_id(desk.sell("bob", "100", "130")),
        accepted_id(desk.buy("alice", "200", "127")),
        accepted_id(desk.sell("bob", "500", "128")),
        accepted_id(desk.sell("bob", "200", "140")),
        accepted_id(desk.buy("alice", "400", "125")),
        accepted_id(desk.sell("carol", "400", "124")),
    ]
    assert ids == [1, 2, 3, 4, 5, 6, 7]
    alice = desk.account("alice")
    assert alice.held == cash(300 * 125 + 200 * 127 + 400 * 125)  # 112,900 held
    assert alice.cash == cash(200000 - 112900)
    assert (desk.position("bob").available, desk.position("bob").held) == (sh(200), sh(800))

    # order 7 sells 400@124: 200 at 127 against order 3, then 200 at 125 against order 1
    _, seven = desk.trade(("alice", 3, "BUY", "0"), ("carol", 7, "SELL", "200"), "200", "127")
    one, seven = desk.trade(("alice", 1, "BUY", "100"), ("carol", 7, "SELL", "0"), "200", "125")

    assert 3 not in desk.ledger.orders and 7 not in desk.ledger.orders
    assert desk.ledger.orders[1].remaining == sh(100)
    assert desk.ledger.orders[1].hold == px(125) * sh(100)
    assert alice.held == cash(100 * 125 + 400 * 125)  # order 1's open part and order 6
    assert alice.cash == cash(200000 - 112900)  # makers trade at their own limit: no refund
    assert desk.position("alice").available == sh(400)
    carol = desk.account("carol")
    assert carol.cash == cash(200 * 127 + 200 * 125)  # the seller's proceeds
    assert (desk.position("carol").available, desk.position("carol").held) == (0, 0)
    assert seven["remaining"] == 0 and seven["cash_available"] == cash(50400)
    assert one["remaining"] == sh(100) and one["cash_held"] == cash(62500)
    # the settlement states what it released and what the order still holds
    assert (one["released"], one["hold"]) == (0, cash(100 * 125))
    assert (seven["released"], seven["hold"]) == (0, 0)


def test_buyer_executing_below_its_limit_gets_the_difference_back(desk):
    desk.open_account("bob")
    desk.issue("bob", "X", "500")
    desk.open_account("dave", "20000")
    resting = accepted_id(desk.sell("bob", "500", "128"))
    taker = accepted_id(desk.buy("dave", "100", "129"))
    assert desk.account("dave").held == cash(12900)
    _, dave = desk.trade(("bob", resting, "SELL", "400"), ("dave", taker, "BUY", "0"), "100", "128")
    assert dave["cash_held"] == 0
    assert dave["cash_available"] == cash(20000 - 12800)  # paid 128 a share, not 129
    assert dave["shares_available"] == sh(100)
    assert (dave["released"], dave["hold"]) == (cash(100), 0)  # (129 - 128) x 100 back
    assert desk.account("bob").cash == cash(12800)


def test_the_matchers_placement_is_passed_to_the_account_unchanged(desk):
    desk.open_account("dave", "20000")
    order = accepted_id(desk.buy("dave", "100", "129"))
    env = desk.env("dave")
    ((kind, placed),) = desk.send(r.order_placed(env, order, "X", "BUY", sh(100), 3, 0))
    assert kind == "OrderPlaced"
    assert placed == {"envelope": env, "order_id": order, "symbol": "X", "side": "BUY",
                      "open_qty": sh(100), "seq": 3, "settlements": 0}  # fmt: skip
    assert desk.account("dave").held == cash(12900)  # it changes nothing


# -- accounts, cash and shares --
def test_create_account_once_with_a_non_negative_balance(desk):
    kind, record = desk.one(r.create_account(desk.env("a"), cash(10), "ab" * 32))
    assert (kind, record["balance"], record["api_key_hash"]) == (
        "AccountCreated",
        cash(10),
        "ab" * 32,
    )
    assert refusal(desk.send(r.create_account(desk.env("a"), 0))) == "account already exists"
    negative = desk.send(r.create_account(desk.env("b"), -1))
    assert refusal(negative) == "initial balance must not be negative"
    assert "b" not in desk.ledger.accounts


def test_deposit_and_withdraw_never_below_zero(desk):
    desk.open_account("a", "100")
    assert desk.one(r.deposit(desk.env("a"), cash(50)))[1]["cash_available"] == cash(150)
    assert refusal(desk.send(r.deposit(desk.env("a"), 0))) == "amount must be positive"
    assert refusal(desk.send(r.deposit(desk.env("nobody"), 5))) == "unknown account"
    too_much = refusal(desk.send(r.withdraw(desk.env("a"), cash(151))))
    assert too_much.startswith("insufficient funds")
    assert desk.one(r.withdraw(desk.env("a"), cash(150)))[1]["cash_available"] == 0


def test_held_cash_cannot_be_withdrawn(desk):
    desk.open_account("a", "100")
    desk.buy("a", "1", "60")
    assert refusal(desk.send(r.withdraw(desk.env("a"), cash(41)))).startswith("insufficient")
    assert desk.one(r.withdraw(desk.env("a"), cash(40)))[0] == "CashWithdrawn"


def test_symbols_are_listed_everywhere_but_announced_by_partition_zero():
    zero, one = Desk(0, 2), Desk(1, 2)
    command = r.create_symbol(zero.env("Y"), TICK, LOT)
    assert zero.send(command) == [
        (
            "SymbolCreated",
            {"envelope": command[1]["envelope"], "tick": TICK, "lot": LOT, "created": True},
        )
    ]
    assert one.send(command) == []
    assert "Y" in one.ledger.symbols
    again = zero.one(r.create_symbol(zero.env("Y"), 1, 1))[1]
    assert (again["created"], again["tick"], again["lot"]) == (False, TICK, LOT)  # keeps its sizes
    assert (
        refusal(zero.send(r.create_symbol(zero.env("Z"), 0, LOT))) == "tick size must be positive"
    )
    assert one.send(r.create_symbol(one.env("Z"), 0, LOT)) == []


def test_issue_shares_adds_to_a_position_of_a_listed_symbol(desk):
    desk.open_account("a")
    assert desk.issue("a", "X", "10")[1]["shares_available"] == sh(10)
    assert desk.issue("a", "X", "5")[1]["shares_available"] == sh(15)
    assert refusal(desk.send(r.issue_shares(desk.env("a"), "NOPE", 1))) == "unknown symbol NOPE"
    assert refusal(desk.send(r.issue_shares(desk.env("a"), "X", 0))) == "quantity must be positive"


# -- placing orders --
@pytest.mark.parametrize(
    ("side", "qty", "price", "extra", "reason"),
    [
        ("BUY", sh(1), px(10), {"symbol": "NOPE"}, "unknown symbol NOPE"),
        ("BUY", 0, px(10), {}, "quantity must be positive"),
        ("BUY", 150, px(10), {}, "quantity 150 is not a multiple of the lot size 100"),
        ("BUY", sh(1), 0, {}, "price must be positive"),
        ("BUY", sh(1), px(10) + 1, {}, "price 100001 is not a multiple of the tick size 100"),
        ("BUY", sh(1), px(10), {"tif": "GTD"}, "a GTD order needs expire_ts"),
        (
            "BUY",
            sh(1),
            px(10),
            {"tif": "GTD", "expire_ts": 5},
            "expire_ts is not after the order's time",
        ),
        ("BUY", sh(1), px(10), {"expire_ts": 2**60}, "expire_ts applies to GTD orders only"),
        (
            "BUY",
            sh(1),
            None,
            {"budget": cash(5), "post_only": True},
            "a post-only order needs a price",
        ),
        (
            "BUY",
            sh(1),
            None,
            {"budget": cash(5), "tif": "GTD", "expire_ts": 2**60},
            "a market order cannot rest: use IOC or FOK",
        ),
        ("BUY", sh(1), None, {}, "a market buy needs a positive budget"),
        ("BUY", sh(1), None, {"budget": 0}, "a market buy needs a positive budget"),
        ("SELL", sh(1), None, {"budget": cash(5)}, "budget applies to market buys only"),
        ("BUY", sh(1), px(10), {"budget": cash(5)}, "budget applies to market buys only"),
        (
            "BUY",
            sh(1),
            px(10),
            {"post_only": True, "tif": "IOC"},
            "a post-only order must rest: use GTC or GTD",
        ),
        ("BUY", sh(10**6), px(10**8), {}, "price × quantity exceeds the 64-bit cash range"),
        (
            "BUY",
            sh(101),
            px(10),
            {},
            "insufficient funds: order needs 1010000000, available 1000000000",
        ),
        ("SELL", sh(51), px(10), {}, "insufficient shares: order needs 5100, available 5000"),
        (
            "BUY",
            sh(1),
            None,
            {"budget": cash(1001)},
            "insufficient funds: order needs 1001000000, available 1000000000",
        ),
    ],
)
def test_place_order_refusals(desk, side, qty, price, extra, reason):
    desk.open_account("a", "1000")
    desk.issue("a", "X", "50")
    symbol = extra.pop("symbol", "X")
    answers = desk.send(r.place_order(desk.env("a"), symbol, side, qty, price, **extra))
    assert refusal(answers) == reason
    assert desk.account("a").cash == cash(1000) and desk.ledger.orders == {}
    assert desk.forwarded == []


def test_a_limit_buy_holds_price_times_quantity_and_is_forwarded(desk):
    desk.open_account("a", "1000")
    (kind, accept), (forward_kind, forward) = desk.buy("a", "3", "100.5", client_order_id="c1")
    assert (kind, forward_kind) == ("OrderAccepted", "PlaceOrder")
    assert accept["hold"] == px("100.5") * sh(3) == cash("301.5")
    assert (accept["cash_available"], accept["cash_held"]) == (cash("698.5"), cash("301.5"))
    assert accept["client_order_id"] == "c1" and accept["duplicate"] is False
    assert forward["envelope"]["key"] == "X" and forward["envelope"]["command_id"] == "cmd-3"
    assert (forward["account"], forward["order_id"], forward["lot"]) == ("a", 1, LOT)


def test_a_sell_holds_shares(desk):
    desk.open_account("a")
    desk.issue("a", "X", "10")
    accept = desk.sell("a", "4", "7")[0][1]
    assert accept["hold"] == sh(4)
    assert (accept["shares_available"], accept["shares_held"]) == (sh(6), sh(4))


def test_market_orders_hold_a_budget_or_shares_and_never_rest(desk):
    desk.open_account("a", "1000")
    desk.issue("a", "X", "10")
    accept, forward = (rec for _, rec in desk.buy("a", "5", None, budget=cash(600)))
    assert (accept["hold"], accept["tif"], forward["tif"]) == (cash(600), "IOC", "IOC")
    assert forward["budget"] == cash(600)
    fok = desk.sell("a", "2", None, tif="FOK")[0][1]
    assert (fok["hold"], fok["tif"]) == (sh(2), "FOK")


def test_order_ids_interleave_partitions():
    desk = Desk(partition=1, partitions=3)
    desk.list_symbol("X")
    desk.open_account("a", "100")
    ids = [accepted_id(desk.buy("a", "1", "1")) for _ in range(3)]
    desk.buy("a", "1000", "1")  # refused: takes no id
    assert [*ids, accepted_id(desk.buy("a", "1", "1"))] == [2, 5, 8, 11]


def test_a_retried_client_order_id_gets_the_original_decision(desk):
    desk.open_account("a", "100")
    first = desk.buy("a", "1", "10", client_order_id="k")[0][1]
    desk.one(r.deposit(desk.env("a"), cash(5)))
    retry = desk.one(r.place_order(desk.env("a"), "X", "BUY", sh(2), px(20), client_order_id="k"))
    assert retry[0] == "OrderAccepted"
    again = retry[1]
    assert (
        again["duplicate"] is True
        and again["envelope"]["command_id"] != first["envelope"]["command_id"]
    )
    same = ("order_id", "client_order_id", "symbol", "side", "price", "qty", "tif", "hold")
    assert {k: again[k] for k in same} == {k: first[k] for k in same}
    assert again["cash_available"] == cash(95)  # balances as they are now
    assert len(desk.ledger.orders) == 1 and len(desk.forwarded) == 1


def test_a_retried_refusal_is_refused_again_even_when_it_would_now_pass(desk):
    desk.open_account("a", "1")
    refused = desk.one(r.place_order(desk.env("a"), "X", "BUY", sh(1), px(10), client_order_id="k"))
    desk.one(r.deposit(desk.env("a"), cash(100)))
    kind, again = desk.one(
        r.place_order(desk.env("a"), "X", "BUY", sh(1), px(10), client_order_id="k")
    )
    assert kind == "CommandRejected" and again["duplicate"] is True
    assert again["reason"] == refused[1]["reason"]
    assert desk.ledger.orders == {}


def test_client_order_ids_are_per_account(desk):
    desk.open_account("a", "100")
    desk.open_account("b", "100")
    assert accepted_id(desk.buy("a", "1", "1", client_order_id="k")) == 1
    assert accepted_id(desk.buy("b", "1", "1", client_order_id="k")) == 2


# -- cancel, reduce, replace: only the owner --
def test_another_accounts_order_is_answered_like_an_unknown_one(desk):
    desk.open_account("a", "100")
    desk.open_account("mallory", "100")
    order_id = accepted_id(desk.buy("a", "1", "10"))
    for command in (r.cancel_order, lambda e, o: r.reduce_order(e, o, LOT)):
        theirs = desk.one(command(desk.env("mallory"), order_id))[1]
        unknown = desk.one(command(desk.env("mallory"), 999))[1]
        assert theirs["reason"] == f"unknown order {order_id}"
        assert unknown["reason"] == "unknown order 999"
    replace = desk.one(r.replace_order(desk.env("mallory"), order_id, px(1), LOT))[1]
    assert replace["reason"] == f"unknown order {order_id}"
    assert len(desk.forwarded) == 1  # only the original placement


def test_cancel_is_forwarded_and_the_close_releases_the_hold(desk):
    desk.open_account("a", "100")
    order_id = accepted_id(desk.buy("a", "2", "10"))
    kind, cancel = desk.one(r.cancel_order(desk.env("a"), order_id))
    assert kind == "CancelOrder" and (cancel["account"], cancel["order_id"]) == ("a", order_id)
    closed_env = r.envelope(cancel["envelope"]["command_id"], "a", cancel["envelope"]["ts"], "gw")
    kind, closed = desk.one(r.order_closed(closed_env, order_id, "X", "BUY", sh(2), "USER", 9))
    assert kind == "OrderClosed"
    assert (closed["released"], closed["qty"], closed["reason"]) == (cash(20), sh(2), "USER")
    assert closed["envelope"]["command_id"] == cancel["envelope"]["command_id"]
    assert (closed["cash_available"], closed["cash_held"]) == (cash(100), 0)
    assert desk.ledger.orders == {} and desk.ledger.forwarded == {}


def test_reduce_releases_that_part_of_the_hold(desk):
    desk.open_account("a", "100")
    order_id = accepted_id(desk.buy("a", "5", "10"))
    assert desk.one(r.reduce_order(desk.env("a"), order_id, sh(2)))[0] == "ReduceOrder"
    reduced = desk.one(r.order_reduced(desk.env("a"), order_id, "X", "BUY", sh(2), sh(3), 4))[1]
    assert (reduced["released"], reduced["remaining"], reduced["cash_held"]) == (
        cash(20),
        sh(3),
        cash(30),
    )
    assert reduced["hold"] == cash(30)
    assert refusal(desk.send(r.reduce_order(desk.env("a"), order_id, 50))).startswith("quantity 50")


def test_replace_holds_the_new_order_until_the_old_one_closes(desk):
    desk.open_account("a", "100")
    old = accepted_id(desk.buy("a", "2", "10"))
    (kind, accept), (fwd_kind, fwd) = desk.send(r.replace_order(desk.env("a"), old, px(15), sh(4)))
    assert (kind, fwd_kind, accept["replaces"], fwd["new_order_id"]) == (
        "OrderAccepted",
        "ReplaceOrder",
        old,
        accept["order_id"],
    )
    assert desk.account("a").held == cash(20 + 60)  # both held until the matcher closes the old
    desk.one(r.order_closed(desk.env("a"), old, "X", "BUY", sh(2), "REPLACED"))
    assert (desk.account("a").held, desk.account("a").cash) == (cash(60), cash(40))
    short = desk.send(r.replace_order(desk.env("a"), accept["order_id"], px(15), sh(5)))
    assert refusal(short) == "insufficient funds: order needs 75000000, available 40000000"


def test_a_replace_the_matcher_refuses_releases_the_new_hold(desk):
    desk.open_account("a", "100")
    old = accepted_id(desk.buy("a", "2", "10"))
    new = accepted_id(desk.send(r.replace_order(desk.env("a"), old, px(20), sh(2))))
    replace_env = desk.forwarded[-1][1]["envelope"]
    env = {**replace_env, "key": "a"}
    answers = desk.send(r.match_rejected(env, old, "X", "unknown order", new))
    (kind, rejection), (closed_kind, closed) = answers
    assert (kind, rejection["command"], rejection["order_id"]) == (
        "CommandRejected",
        "ReplaceOrder",
        old,
    )
    assert (closed_kind, closed["order_id"], closed["reason"], closed["released"]) == (
        "OrderClosed",
        new,
        "REJECTED",
        cash(40),
    )
    assert desk.account("a").held == cash(20) and new not in desk.ledger.orders


def test_a_placement_the_matcher_refuses_as_a_duplicate_id_releases_nothing(desk):
    desk.open_account("a", "100")
    order_id = accepted_id(desk.buy("a", "1", "10"))
    place_env = {**desk.forwarded[-1][1]["envelope"], "key": "a"}
    refused = desk.one(r.match_rejected(place_env, order_id, "X", "duplicate order id"))[1]
    assert (refused["command"], refused["order_id"]) == ("PlaceOrder", order_id)
    assert desk.account("a").held == cash(10) and order_id in desk.ledger.orders


def test_a_cancel_the_matcher_refuses_names_the_cancel(desk):
    desk.open_account("a", "100")
    order_id = accepted_id(desk.buy("a", "1", "10"))
    cancel = desk.one(r.cancel_order(desk.env("a"), order_id))[1]
    env = {**cancel["envelope"], "key": "a"}
    rejection = desk.one(r.match_rejected(env, order_id, "X", "unknown order"))[1]
    assert (rejection["command"], rejection["reason"]) == ("CancelOrder", "unknown order")


# -- settlements --
def test_a_market_buy_pays_from_its_budget_and_gets_the_rest_back(desk):
    desk.open_account("m", "1000")
    desk.open_account("s")
    desk.issue("s", "X", "10")
    ask = accepted_id(desk.sell("s", "10", "30"))
    bid = accepted_id(desk.buy("m", "10", None, budget=cash(100)))
    ask_fill, fill = desk.trade(("s", ask, "SELL", "7"), ("m", bid, "BUY", "7"), "3", "30")
    assert (fill["cash_held"], fill["cash_available"]) == (cash(10), cash(900))
    assert (fill["released"], fill["hold"]) == (0, cash(10))  # a budget is not per share
    assert (ask_fill["released"], ask_fill["hold"]) == (0, sh(7))
    closed = desk.one(r.order_closed(desk.env("m"), bid, "X", "BUY", sh(7), "IOC_REMAINDER"))[1]
    assert (closed["released"], closed["cash_available"], closed["cash_held"]) == (
        cash(10),
        cash(910),
        0,
    )


def test_a_filled_market_buy_releases_what_it_did_not_spend(desk):
    desk.open_account("m", "1000")
    desk.open_account("s")
    desk.issue("s", "X", "10")
    ask = accepted_id(desk.sell("s", "2", "30"))
    bid = accepted_id(desk.buy("m", "2", None, budget=cash(100)))
    _, fill = desk.trade(("s", ask, "SELL", "0"), ("m", bid, "BUY", "0"), "2", "30")
    assert (fill["cash_held"], fill["cash_available"]) == (0, cash(940))
    assert (fill["released"], fill["hold"]) == (cash(40), 0)  # the unspent budget
    assert desk.ledger.orders == {}


@pytest.mark.parametrize(
    ("side", "price", "qty", "reason"),
    [
        ("BUY", "11", "1", "fill price 110000 is beyond the order's limit 100000"),
        ("BUY", "10", "3", "fill of 300 outside the open quantity 200"),
        ("SELL", "10", "1", "order 1 is not a SELL order of X"),
        ("BUY", "0", "1", "fill price must be positive"),
    ],
)
def test_a_fill_that_would_break_a_balance_is_refused(desk, side, price, qty, reason):
    desk.open_account("a", "100")
    accepted_id(desk.buy("a", "2", "10"))
    before = (desk.account("a").cash, desk.account("a").held)
    kind, rejection = desk.fill("a", 1, side, qty, price, "0")
    assert (kind, rejection["command"], rejection["reason"]) == ("CommandRejected", "Fill", reason)
    assert (desk.account("a").cash, desk.account("a").held) == before


def test_settlements_for_unknown_orders_change_nothing(desk):
    desk.open_account("a", "100")
    env = desk.env("a")
    for command in (
        r.fill(env, 42, "X", "BUY", 1, 1, 0, 1, "MAKER"),
        r.order_closed(env, 42, "X", "BUY", 1, "USER"),
        r.order_reduced(env, 42, "X", "BUY", 1, 0, 1),
    ):
        assert refusal(desk.send(command)) == "unknown order 42"


def test_a_refused_placement_closed_by_the_matcher_releases_its_hold(desk):
    desk.open_account("a", "100")
    order_id = accepted_id(desk.buy("a", "1", "10", post_only=True))
    closed = desk.one(r.order_closed(desk.env("a"), order_id, "X", "BUY", sh(1), "POST_ONLY"))[1]
    assert (closed["released"], closed["cash_available"]) == (cash(10), cash(100))


# -- the 64-bit range --
def test_cash_beyond_the_64_bit_range_is_refused():
    desk = Desk()
    desk.open_account("a", "0")
    assert desk.one(r.deposit(desk.env("a"), MAX_UNITS))[0] == "CashDeposited"
    assert (
        refusal(desk.send(r.deposit(desk.env("a"), 1)))
        == "deposit would exceed the exchange's cash limit"
    )
    assert refusal(desk.send(r.create_account(desk.env("b"), 1))).startswith(
        "initial balance would exceed"
    )


def test_each_partition_admits_its_share_of_the_range():
    desk = Desk(partition=2, partitions=4)
    desk.list_symbol("X")
    desk.open_account("a", "0")
    assert refusal(desk.send(r.deposit(desk.env("a"), MAX_UNITS // 4 + 1))).startswith(
        "deposit would"
    )
    assert desk.one(r.deposit(desk.env("a"), MAX_UNITS // 4))[0] == "CashDeposited"
    refused = desk.send(r.issue_shares(desk.env("a"), "X", MAX_UNITS // 4 + 1))
    assert refusal(refused) == "issue would exceed the share limit of X"
    assert conservation_problems([desk.ledger]) == []


# -- the shape of what the core emits --
def test_unknown_record_names_are_not_handled():
    ledger = Ledger()
    assert not ledger.handles("marketlog.market.Trade")
    assert ledger.apply("marketlog.market.Trade", {}) == []
