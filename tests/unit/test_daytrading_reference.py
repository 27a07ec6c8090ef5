"""The reference model of the day-trading rules (tests/daytrading_reference.py) against
docs/daytrading.md: one scenario per rule and per error code, invariants on random sequences,
every vendored course workload replayed, and its parser against the services' parser."""

from __future__ import annotations

import random

import pytest

from services.common import workload
from services.common.config import ROOT
from tests.daytrading_reference import (
    MAX_PENDING,
    WINDOW_US,
    BadLine,
    Model,
    Movement,
    Result,
    Tick,
    hashed_quote,
    parse_line,
    parse_text,
    run,
)

WORKLOADS = ROOT / "tests" / "data" / "seng468" / "workloads"
FILES = [
    "1userWorkLoad",
    "2userWorkLoad.txt",
    "10User_testWorkLoad",
    "45User_testWorkLoad",
    "100User_testWorkLoad",
]
USERS = dict(zip(FILES, [1, 2, 10, 45, 100], strict=True))
T0 = 1_700_000_000_000_000  # µs
SECOND = 1_000_000


class Script:
    """Commands one line at a time; the clock moves 1 s per command unless told otherwise;
    prices are set by hand per symbol."""

    def __init__(self) -> None:
        self.prices: dict[str, int] = {}
        self.asked: list[tuple[str, str | None, int]] = []
        self.model = Model(self.quote)
        self.now = T0

    def quote(self, stock: str, user: str | None, now: int) -> int:
        self.asked.append((stock, user, now))
        return self.prices[stock]

    def do(self, line: str, after: int = SECOND):
        self.now += after
        outcome = self.model.apply(parse_line(line), self.now)
        self.model.check()
        return outcome

    def ok(self, line: str, after: int = SECOND) -> tuple:
        outcome = self.do(line, after)
        assert outcome.ok, (line, outcome)
        return outcome.detail

    def err(self, line: str, after: int = SECOND) -> str:
        outcome = self.do(line, after)
        assert not outcome.ok, (line, outcome)
        return outcome.code

    def tick(self, stock: str, price: int, after: int = SECOND):
        self.now += after
        done = self.model.tick(Tick(stock, price), self.now)
        self.model.check()
        return done

    def state(self, user: str = "u") -> dict:
        return self.model.user_state(user)


@pytest.fixture
def s() -> Script:
    script = Script()
    script.prices = {"ABC": 1000, "XYZ": 250, "S": 1234}
    return script


# -- accounts ------------------------------------------------------------------------------
def test_add_creates_the_user_and_adds_cash(s):
    assert s.ok("[1] ADD,u,100.00") == (10_000,)
    assert s.ok("[2] ADD,u,0.50") == (10_050,)
    assert s.state()["cash"] == 10_050
    assert s.model.movements == [Movement(1, "u", "add", 10_000), Movement(2, "u", "add", 50)]


@pytest.mark.parametrize(
    "line",
    [
        "BUY,nobody,ABC,10.00",
        "SELL,nobody,ABC,10.00",
        "COMMIT_BUY,nobody",
        "CANCEL_BUY,nobody",
        "COMMIT_SELL,nobody",
        "CANCEL_SELL,nobody",
        "SET_BUY_AMOUNT,nobody,ABC,10.00",
        "SET_BUY_TRIGGER,nobody,ABC,10.00",
        "CANCEL_SET_BUY,nobody,ABC",
        "SET_SELL_AMOUNT,nobody,ABC,10.00",
        "SET_SELL_TRIGGER,nobody,ABC,10.00",
        "CANCEL_SET_SELL,nobody,ABC",
        "DISPLAY_SUMMARY,nobody",
        "DUMPLOG,nobody,out.xml",
    ],
)
def test_every_command_but_add_quote_and_admin_dumplog_needs_the_user(s, line):
    assert s.err(line) == "unknown_user"
    assert s.model.traders == {}


def test_quote_and_admin_dumplog_need_no_user(s):
    assert s.ok("QUOTE,nobody,ABC") == ("ABC", 1000)
    assert s.ok("DUMPLOG,./testLOG") == ("./testLOG",)
    assert s.model.traders == {}


def test_a_bad_line_is_refused_and_changes_nothing(s):
    s.ok("ADD,u,100.00")
    before = s.state()
    outcome = s.do("[9962] ADD,u,-73280.58")
    assert (outcome.ok, outcome.code, outcome.txn) == (False, "bad_input", 9962)
    assert s.state() == before


# -- BUY -----------------------------------------------------------------------------------
def test_buy_holds_the_cost_of_whole_shares_only(s):
    s.ok("[1] ADD,u,100.00")
    assert s.ok("[2] BUY,u,ABC,35.99") == ("ABC", 3, 1000, 3000)  # floor(3599 / 1000) = 3
    st = s.state()
    assert (st["cash"], st["held"], st["holdings"]) == (7000, 3000, {})
    assert st["pending_buys"] == [("ABC", 3, 1000, 3000, s.now, 2)]
    assert s.model.movements[-1] == Movement(2, "u", "remove", 3000)


def test_buy_checks_the_cost_not_the_amount(s):
    s.ok("ADD,u,30.00")
    assert s.ok("BUY,u,ABC,39.99") == ("ABC", 3, 1000, 3000)  # amount > cash, cost = cash
    assert s.state()["cash"] == 0
    assert s.err("BUY,u,ABC,10.00") == "insufficient_funds"


def test_buy_that_buys_no_whole_share_is_refused(s):
    s.ok("ADD,u,100.00")
    assert s.err("BUY,u,ABC,9.99") == "no_whole_share"
    assert s.state()["cash"] == 10_000


def test_buy_asks_the_quote_with_the_user_and_record_time(s):
    s.ok("ADD,u,100.00")
    s.ok("BUY,u,ABC,10.00")
    assert s.asked == [("ABC", "u", s.now)]


def test_commit_buy_turns_the_hold_into_shares(s):
    s.ok("ADD,u,100.00")
    s.ok("[2] BUY,u,ABC,25.00")
    moved = len(s.model.movements)
    assert s.ok("[3] COMMIT_BUY,u") == ("ABC", 2, 1000, 2000)
    st = s.state()
    assert (st["cash"], st["held"], st["holdings"], st["pending_buys"]) == (8000, 0, {"ABC": 2}, [])
    assert len(s.model.movements) == moved  # the cash left available at BUY, not now
    assert s.err("COMMIT_BUY,u") == "no_pending_buy"


def test_cancel_buy_gives_the_hold_back(s):
    s.ok("ADD,u,100.00")
    s.ok("[2] BUY,u,ABC,25.00")
    assert s.ok("[3] CANCEL_BUY,u") == ("ABC", 2, 1000, 2000)
    st = s.state()
    assert (st["cash"], st["held"], st["holdings"]) == (10_000, 0, {})
    assert s.model.movements[-1] == Movement(3, "u", "add", 2000)
    assert s.err("CANCEL_BUY,u") == "no_pending_buy"


def test_pending_buys_stack_most_recent_first(s):
    s.ok("ADD,u,100.00")
    s.ok("BUY,u,ABC,10.00")
    s.prices["ABC"] = 500
    s.ok("BUY,u,ABC,10.00")
    assert s.ok("COMMIT_BUY,u") == ("ABC", 2, 500, 1000)  # the second BUY, at its own price
    assert s.ok("CANCEL_BUY,u") == ("ABC", 1, 1000, 1000)  # then the first
    assert s.err("COMMIT_BUY,u") == "no_pending_buy"
    assert s.state()["holdings"] == {"ABC": 2}
    assert s.state()["cash"] == 9000


def test_a_buy_expires_after_60_seconds_of_record_time(s):
    s.ok("ADD,u,100.00")
    s.ok("[2] BUY,u,ABC,20.00")
    assert s.ok("COMMIT_BUY,u", after=WINDOW_US - 1) == ("ABC", 2, 1000, 2000)
    s.ok("[4] BUY,u,ABC,20.00")
    assert s.err("COMMIT_BUY,u", after=WINDOW_US) == "no_pending_buy"
    st = s.state()
    assert (st["cash"], st["held"]) == (8000, 0)  # the expired hold came back
    assert s.model.movements[-1] == Movement(4, "u", "add", 2000)  # under the BUY's number


def test_an_expired_buy_is_released_by_any_command_of_its_user_only(s):
    s.ok("ADD,u,100.00")
    s.ok("ADD,v,100.00")
    s.ok("BUY,u,ABC,50.00")
    s.ok("QUOTE,v,ABC", after=2 * WINDOW_US)  # another user: u's hold stays
    assert s.state()["held"] == 5000
    s.model.check()
    s.ok("QUOTE,u,ABC")  # u's own command releases it first
    assert (s.state()["cash"], s.state()["held"]) == (10_000, 0)


def test_expired_holds_are_released_before_the_funds_check(s):
    s.ok("ADD,u,50.00")
    s.ok("BUY,u,ABC,50.00")
    assert s.err("BUY,u,ABC,50.00") == "insufficient_funds"
    assert s.ok("BUY,u,ABC,50.00", after=WINDOW_US) == ("ABC", 5, 1000, 5000)


def test_an_expired_entry_under_a_live_one_goes_too(s):
    s.ok("ADD,u,100.00")
    s.ok("BUY,u,ABC,10.00")  # t = 2 s
    s.ok("BUY,u,ABC,20.00", after=30 * SECOND)  # t = 32 s
    s.ok("QUOTE,u,ABC", after=WINDOW_US - 30 * SECOND)  # first is 60 s old, second 30 s
    assert [p[1] for p in s.state()["pending_buys"]] == [2]
    assert s.ok("COMMIT_BUY,u") == ("ABC", 2, 1000, 2000)


def test_at_most_100_pending_buys(s):
    s.ok("ADD,u,1000.00")
    for _ in range(MAX_PENDING):
        s.ok("BUY,u,XYZ,2.50", after=1)
    assert s.err("BUY,u,XYZ,2.50", after=1) == "too_many_pending"
    assert s.ok("BUY,u,XYZ,2.50", after=WINDOW_US)  # once they expired


# -- SELL ----------------------------------------------------------------------------------
def buy_shares(s: Script, stock: str, amount: str) -> None:
    s.ok(f"BUY,u,{stock},{amount}")
    s.ok("COMMIT_BUY,u")


def test_sell_sets_the_shares_aside_and_commit_pays(s):
    s.ok("ADD,u,100.00")
    buy_shares(s, "ABC", "50.00")  # 5 shares
    s.prices["ABC"] = 1500
    assert s.ok("[5] SELL,u,ABC,31.00") == ("ABC", 2, 1500, 3000)
    assert s.state()["holdings"] == {"ABC": 3}
    assert s.err("SELL,u,ABC,60.00") == "insufficient_shares"  # 4 > the 3 still free
    assert s.ok("[7] COMMIT_SELL,u") == ("ABC", 2, 1500, 3000)
    st = s.state()
    assert (st["cash"], st["holdings"], st["pending_sells"]) == (8000, {"ABC": 3}, [])
    assert s.model.movements[-1] == Movement(7, "u", "add", 3000)
    assert s.err("COMMIT_SELL,u") == "no_pending_sell"


def test_sell_errors(s):
    s.ok("ADD,u,100.00")
    assert s.err("SELL,u,ABC,20.00") == "insufficient_shares"  # holds none: never capped
    buy_shares(s, "ABC", "10.00")
    assert s.err("SELL,u,ABC,9.99") == "no_whole_share"
    assert s.err("SELL,u,ABC,20.00") == "insufficient_shares"
    assert s.err("CANCEL_SELL,u") == "no_pending_sell"


def test_cancel_sell_and_expiry_give_the_shares_back(s):
    s.ok("ADD,u,100.00")
    buy_shares(s, "ABC", "40.00")
    s.ok("SELL,u,ABC,20.00")
    s.ok("SELL,u,ABC,10.00")
    assert s.ok("CANCEL_SELL,u") == ("ABC", 1, 1000, 1000)  # the most recent
    assert s.state()["holdings"] == {"ABC": 2}
    assert s.err("COMMIT_SELL,u", after=WINDOW_US) == "no_pending_sell"
    assert s.state()["holdings"] == {"ABC": 4}
    assert s.state()["cash"] == 6000


# -- SET_BUY -------------------------------------------------------------------------------
def test_set_buy_amount_reserves_and_a_new_amount_replaces_it(s):
    s.ok("ADD,u,100.00")
    assert s.ok("[2] SET_BUY_AMOUNT,u,ABC,30.00") == ("ABC", 3000)
    assert (s.state()["cash"], s.state()["held"]) == (7000, 3000)
    s.ok("[3] SET_BUY_AMOUNT,u,ABC,50.00")
    assert (s.state()["cash"], s.state()["held"]) == (5000, 5000)
    s.ok("[4] SET_BUY_AMOUNT,u,ABC,10.00")
    assert (s.state()["cash"], s.state()["held"]) == (9000, 1000)
    s.ok("[5] SET_BUY_AMOUNT,u,ABC,10.00")
    assert s.state()["buy_reserves"] == {"ABC": 1000}
    assert s.model.movements[1:] == [
        Movement(2, "u", "remove", 3000),
        Movement(3, "u", "remove", 2000),
        Movement(4, "u", "add", 4000),
    ]
    assert s.err("SET_BUY_AMOUNT,u,ABC,100.01") == "insufficient_funds"  # needs 90.01 more
    assert s.ok("SET_BUY_AMOUNT,u,ABC,100.00")
    assert s.state()["cash"] == 0


def test_set_buy_trigger_needs_an_amount_that_buys_a_share(s):
    s.ok("ADD,u,100.00")
    assert s.err("SET_BUY_TRIGGER,u,ABC,10.00") == "no_buy_amount"
    s.ok("SET_BUY_AMOUNT,u,ABC,25.00")
    assert s.err("SET_BUY_TRIGGER,u,ABC,25.01") == "no_whole_share"
    assert s.ok("SET_BUY_TRIGGER,u,ABC,12.00") == ("ABC", 1200, 2500)
    assert s.ok("[9] SET_BUY_TRIGGER,u,ABC,8.00") == ("ABC", 800, 2500)  # moved
    assert s.state()["buy_triggers"] == {"ABC": 800}
    assert s.err("SET_BUY_AMOUNT,u,ABC,7.99") == "no_whole_share"  # armed at 8.00
    assert s.state()["buy_reserves"] == {"ABC": 2500}


def test_cancel_set_buy_restores_the_reserve_and_drops_the_trigger(s):
    s.ok("ADD,u,100.00")
    assert s.err("CANCEL_SET_BUY,u,ABC") == "no_buy_amount"
    s.ok("SET_BUY_AMOUNT,u,ABC,25.00")
    s.ok("SET_BUY_TRIGGER,u,ABC,8.00")
    assert s.ok("[4] CANCEL_SET_BUY,u,ABC") == ("ABC", 2500)
    st = s.state()
    assert (st["cash"], st["held"], st["buy_reserves"], st["buy_triggers"]) == (10_000, 0, {}, {})
    assert s.model.movements[-1] == Movement(4, "u", "add", 2500)
    assert s.tick("ABC", 100) == []


def test_buy_trigger_fires_at_or_below_its_price_and_refunds_the_rest(s):
    s.ok("ADD,u,100.00")
    s.ok("SET_BUY_AMOUNT,u,ABC,25.00")
    assert s.tick("ABC", 700) == []  # not armed yet
    s.ok("[3] SET_BUY_TRIGGER,u,ABC,8.00")
    assert s.tick("ABC", 801) == []
    assert s.tick("XYZ", 100) == []
    [done] = s.tick("ABC", 800)
    assert (done.txn, done.side, done.shares, done.price, done.value) == (3, "buy", 3, 800, 2400)
    st = s.state()
    assert (st["cash"], st["held"], st["holdings"]) == (7600, 0, {"ABC": 3})
    assert (st["buy_reserves"], st["buy_triggers"]) == ({}, {})  # one-shot
    assert s.model.movements[-1] == Movement(3, "u", "add", 100)
    assert s.tick("ABC", 100) == []


def test_buy_trigger_with_nothing_left_over_moves_no_cash(s):
    s.ok("ADD,u,100.00")
    s.ok("SET_BUY_AMOUNT,u,ABC,24.00")
    s.ok("SET_BUY_TRIGGER,u,ABC,8.00")
    moved = len(s.model.movements)
    [done] = s.tick("ABC", 600)
    assert (done.shares, done.value) == (4, 2400)
    assert len(s.model.movements) == moved


# -- SET_SELL ------------------------------------------------------------------------------
def test_set_sell_amount_alone_reserves_nothing(s):
    s.ok("ADD,u,100.00")
    assert s.ok("SET_SELL_AMOUNT,u,ABC,50.00") == ("ABC", 5000, 0)  # holds none: fine
    assert s.state()["sell_amounts"] == {"ABC": 5000}
    assert s.tick("ABC", 10**6) == []


def test_set_sell_trigger_reserves_the_shares_the_amount_buys_at_the_trigger(s):
    s.ok("ADD,u,100.00")
    assert s.err("SET_SELL_TRIGGER,u,ABC,10.00") == "no_sell_amount"
    buy_shares(s, "ABC", "50.00")  # 5 shares
    s.ok("SET_SELL_AMOUNT,u,ABC,45.00")
    assert s.err("SET_SELL_TRIGGER,u,ABC,45.01") == "no_whole_share"
    assert s.err("SET_SELL_TRIGGER,u,ABC,7.00") == "insufficient_shares"  # 6 > 5
    assert s.ok("[8] SET_SELL_TRIGGER,u,ABC,15.00") == ("ABC", 1500, 3)
    assert (s.state()["holdings"], s.state()["sell_reserved"]) == ({"ABC": 2}, {"ABC": 3})
    assert s.ok("SET_SELL_TRIGGER,u,ABC,20.00") == ("ABC", 2000, 2)  # moved: one share back
    assert s.state()["holdings"] == {"ABC": 3}
    assert s.ok("SET_SELL_AMOUNT,u,ABC,100.00") == ("ABC", 10_000, 5)  # armed: re-reserved
    assert s.state()["holdings"] == {}
    assert s.err("SET_SELL_AMOUNT,u,ABC,120.00") == "insufficient_shares"
    assert s.err("SET_SELL_AMOUNT,u,ABC,19.99") == "no_whole_share"
    assert s.ok("[13] SET_SELL_TRIGGER,u,ABC,25.00") == ("ABC", 2500, 4)
    moved = len(s.model.movements)
    assert s.tick("ABC", 2499) == []
    assert len(s.model.movements) == moved  # re-reserving never touches cash
    [done] = s.tick("ABC", 3000)
    assert (done.txn, done.side, done.shares, done.value) == (13, "sell", 4, 12_000)
    st = s.state()
    assert (st["cash"], st["holdings"], st["sell_amounts"], st["sell_triggers"]) == (
        17_000,
        {"ABC": 1},
        {},
        {},
    )
    assert s.model.movements[-1] == Movement(13, "u", "add", 12_000)


def test_cancel_set_sell_returns_the_reserved_shares(s):
    s.ok("ADD,u,100.00")
    assert s.err("CANCEL_SET_SELL,u,ABC") == "no_sell_amount"
    buy_shares(s, "ABC", "50.00")
    s.ok("SET_SELL_AMOUNT,u,ABC,30.00")
    assert s.ok("CANCEL_SET_SELL,u,ABC") == ("ABC", 0)
    s.ok("SET_SELL_AMOUNT,u,ABC,30.00")
    s.ok("SET_SELL_TRIGGER,u,ABC,10.00")
    assert s.state()["holdings"] == {"ABC": 2}
    assert s.ok("CANCEL_SET_SELL,u,ABC") == ("ABC", 3)
    assert (s.state()["holdings"], s.state()["sell_amounts"]) == ({"ABC": 5}, {})


def test_a_tick_fires_users_in_order_buy_before_sell_after_their_sweep(s):
    for user in ("b", "a"):
        s.ok(f"ADD,{user},100.00")
        s.ok(f"BUY,{user},ABC,20.00")
        s.ok(f"COMMIT_BUY,{user}")
        s.ok(f"SET_SELL_AMOUNT,{user},ABC,10.00")
        s.ok(f"SET_SELL_TRIGGER,{user},ABC,5.00")
        s.ok(f"SET_BUY_AMOUNT,{user},ABC,30.00")
        s.ok(f"SET_BUY_TRIGGER,{user},ABC,10.00")
    s.ok("BUY,a,XYZ,5.00")  # pending, will be expired by the tick
    s.ok("BUY,b,XYZ,5.00")
    done = s.tick("ABC", 1000, after=WINDOW_US)
    assert [(d.user, d.side) for d in done] == [
        ("a", "buy"),
        ("a", "sell"),
        ("b", "buy"),
        ("b", "sell"),
    ]
    for user in ("a", "b"):
        st = s.state(user)
        assert st["pending_buys"] == []  # swept before its triggers ran
        assert st["holdings"] == {"ABC": 3}  # 2 bought, 2 reserved and sold, 3 by trigger
        assert st["cash"] == 10_000 - 2000 - 3000 + 2000


def test_a_tick_does_not_sweep_users_it_does_not_fire(s):
    s.ok("ADD,u,100.00")
    s.ok("SET_BUY_AMOUNT,u,ABC,30.00")
    s.ok("SET_BUY_TRIGGER,u,ABC,10.00")
    s.ok("BUY,u,XYZ,5.00")
    s.tick("ABC", 1001, after=WINDOW_US)
    assert len(s.state()["pending_buys"]) == 1


# -- DISPLAY_SUMMARY, DUMPLOG ----------------------------------------------------------------
def test_display_summary_shows_the_state_after_the_sweep(s):
    s.ok("ADD,u,100.00")
    s.ok("[2] BUY,u,ABC,20.00")
    [summary] = s.ok("DISPLAY_SUMMARY,u")
    assert summary["pending_buys"] == [("ABC", 2, 1000, 2000, T0 + 2 * SECOND, 2)]
    [summary] = s.ok("DISPLAY_SUMMARY,u", after=WINDOW_US)
    assert (summary["cash"], summary["pending_buys"]) == (10_000, [])


def test_dumplog_user_form(s):
    s.ok("ADD,u,1.00")
    assert s.ok("DUMPLOG,u,./mine.xml") == ("./mine.xml",)


# -- the 1-user course file, by hand -------------------------------------------------------
def test_the_first_lines_of_the_one_user_file_at_a_fixed_price():
    lines = (WORKLOADS / "1userWorkLoad").read_text().splitlines()[:17]
    events = [(T0 + i * SECOND, parse_line(line)) for i, line in enumerate(lines)]
    result = run(events, lambda stock, user, now: 1000)
    got = [(o.txn, o.command, o.code, o.detail[:4]) for o in result.outcomes]
    assert got == [
        (1, "ADD", None, (6_351_153,)),
        (2, "QUOTE", None, ("S", 1000)),
        (3, "BUY", None, ("S", 27, 1000, 27_000)),
        (4, "COMMIT_BUY", None, ("S", 27, 1000, 27_000)),
        (5, "COMMIT_SELL", "no_pending_sell", ()),
        (6, "CANCEL_SELL", "no_pending_sell", ()),
        (7, "QUOTE", None, ("S", 1000)),
        (8, "ADD", None, (6_351_153 - 27_000 + 4_501_623,)),
        (9, "COMMIT_BUY", "no_pending_buy", ()),
        (10, "COMMIT_BUY", "no_pending_buy", ()),
        (11, "DISPLAY_SUMMARY", None, result.outcomes[10].detail),
        (12, "ADD", None, (6_351_153 - 27_000 + 4_501_623 + 7_187_998,)),
        (13, "BUY", None, ("S", 30, 1000, 30_000)),
        (14, "COMMIT_BUY", None, ("S", 30, 1000, 30_000)),
        (15, "COMMIT_BUY", "no_pending_buy", ()),
        (16, "COMMIT_BUY", "no_pending_buy", ()),
        (17, "COMMIT_SELL", "no_pending_sell", ()),
    ]
    assert result.model.state()["oY01WVirLr"]["holdings"] == {"S": 57}


# -- invariants on random sequences ----------------------------------------------------------
def random_line(rng: random.Random, users: list[str]) -> str:
    user, stock = rng.choice(users), rng.choice(["A", "B", "CDE"])
    money = f"{rng.randint(1, 400)}.{rng.randint(0, 99):02d}"
    name = rng.choice(sorted(workload.COMMANDS))
    args = {
        "ADD": [money],
        "QUOTE": [stock],
        "BUY": [stock, money],
        "SELL": [stock, money],
        "SET_BUY_AMOUNT": [stock, money],
        "SET_BUY_TRIGGER": [stock, money],
        "SET_SELL_AMOUNT": [stock, money],
        "SET_SELL_TRIGGER": [stock, money],
        "CANCEL_SET_BUY": [stock],
        "CANCEL_SET_SELL": [stock],
        "DUMPLOG": ["out"],
    }.get(name, [])
    return ",".join([name, user, *args])


@pytest.mark.parametrize("seed", range(20))
def test_invariants_hold_after_every_step_of_a_random_session(seed):
    rng = random.Random(seed)
    quote = hashed_quote(str(seed))
    model = Model(quote)
    now = T0
    users = ["u1", "u2", "u3"]
    codes = set()
    for txn in range(1, 1500):
        now += rng.choice([1, 1000, SECOND, 20 * SECOND])
        if rng.random() < 0.15:
            model.tick(Tick(rng.choice(["A", "B", "CDE"]), rng.randint(100, 40_000)), now)
        else:
            outcome = model.apply(parse_line(f"[{txn}] " + random_line(rng, users)), now)
            codes.add(outcome.code)
        model.check()
    model.expire_all(now + WINDOW_US)
    model.check()
    for state in model.state().values():
        assert state["pending_buys"] == state["pending_sells"] == []
        assert state["held"] == sum(state["buy_reserves"].values())
    assert None in codes and len(codes) > 5  # successes and several kinds of error


# -- the vendored course workloads -----------------------------------------------------------
def replay_workload(name: str, step_us: int, tick_every: int):
    """Replay a vendored file: its commands one ``step_us`` apart and, after every
    ``tick_every`` commands, a tick for each symbol with an armed trigger (as the system's
    ticker does) at a deterministic price. Returns the result and every event applied, ticks
    included, so that ``run`` can replay exactly the same input."""
    quote = hashed_quote(name)
    model = Model(quote)
    events: list = []
    outcomes = []
    now = T0
    for i, item in enumerate(parse_text((WORKLOADS / name).read_text()), 1):
        now += step_us
        events.append((now, item))
        outcomes.append(model.apply(item, now))
        if i % tick_every == 0:
            armed = sorted(
                {s for t in model.traders.values() for s, p in t.buy_plans.items() if p.trigger}
                | {s for t in model.traders.values() for s, p in t.sell_plans.items() if p.trigger}
            )
            for stock in armed:
                tick = Tick(stock, quote(stock, None, now + 7 * SECOND))
                events.append((now, tick))
                model.tick(tick, now)
    return Result(model, outcomes), events, quote


@pytest.mark.parametrize("name", FILES)
def test_every_vendored_workload_replays(name):
    lines = [line for line in (WORKLOADS / name).read_text().splitlines() if line.strip()]
    # 1 s per command in the small file (expiries happen), 10 ms in the others
    result, _, _ = replay_workload(name, SECOND if len(lines) < 1000 else 10_000, 50)
    model = result.model
    model.check()
    assert len(result.outcomes) == len(lines)
    assert [o.txn for o in result.outcomes] == list(range(1, len(lines) + 1))
    ok = sum(o.ok for o in result.outcomes)
    codes = {o.code for o in result.outcomes if not o.ok}
    assert 0 < ok < len(lines)
    assert {"no_pending_buy", "no_pending_sell", "no_sell_amount"} <= codes
    assert result.outcomes[-1].command == "DUMPLOG" and result.outcomes[-1].ok
    users = {o.user for o in result.outcomes if o.user}
    assert set(model.state()) == users
    assert len(users) == USERS[name]
    if len(lines) >= 10_000:
        assert model.executions  # the ticks did fire triggers
        assert {"insufficient_shares", "no_whole_share"} <= codes
    if name == "10User_testWorkLoad":
        bad = [o for o in result.outcomes if o.code == "bad_input"]
        assert [o.txn for o in bad] == [9962]


def test_a_replay_is_deterministic():
    first, events, quote = replay_workload("10User_testWorkLoad", 10_000, 50)
    second = run(events, quote)
    assert first.outcomes == second.outcomes
    assert first.model.state() == second.model.state()
    assert first.model.movements == second.model.movements


# -- the parser, against the services' parser ------------------------------------------------
# a parent-directory segment, as input that must be refused (spelled out so that
# test_repository_self_contained, which flags every literal one, does not take it for a path)
UP = "." * 2
EDGE_LINES = [
    "[1] ADD,oY01WerH6z,8547.12 ",
    "ADD,u,8547.12",
    "ADD,u,8547.1",
    "ADD,u,8547",
    "ADD,u,8547.120",
    "ADD,u,8547.123",
    "ADD,u,-5.00",
    "ADD,u,+5.00",
    "ADD,u,0.00",
    "ADD,u,.50",
    "ADD,u,5.",
    "ADD,u,1e3",
    "ADD,u,9999999999.99",
    "ADD,u,10000000000.00",
    "ADD,u,00000000000001.00",
    "ADD,u",
    "ADD,u,1.00,2.00",
    "add,u,1.00",
    "HELLO,u",
    "",
    "[1] ",
    "[0] ADD,u,1.00",
    "[x] ADD,u,1.00",
    "[1 ADD,u,1.00",
    "[9223372036854775807] ADD,u,1.00",
    "[9223372036854775808] ADD,u,1.00",
    "[ 7 ] ADD,u,1.00",
    "[7]ADD,u,1.00",
    "  QUOTE , u , ABC  ",
    "QUOTE,u,ABCD",
    "QUOTE,u,abc",
    "QUOTE,u,A1",
    "QUOTE,u,",
    "QUOTE,,ABC",
    "QUOTE,user name,ABC",
    "QUOTE," + "u" * 32 + ",ABC",
    "QUOTE," + "u" * 33 + ",ABC",
    "QUOTE,jo_hn-2,ABC",
    "QUOTE,jöhn,ABC",
    "QUOTE,u,ABC\x00",
    "QUOTE,u,A\tB",
    "COMMIT_BUY,u",
    "COMMIT_BUY,u,",
    "COMMIT_BUY",
    "SET_BUY_TRIGGER,u,ABC,20.00",
    "SET_SELL_TRIGGER,u,ABC,20.001",
    "DUMPLOG,./testLOG",
    "DUMPLOG,u,out.dump",
    "DUMPLOG,../etc/passwd",
    f"DUMPLOG,u,a/{UP}/b",
    f"DUMPLOG,u,a/{UP}",
    f"DUMPLOG,u,a/{UP}x/b",
    "DUMPLOG,/etc/passwd",
    "DUMPLOG,.hidden",
    "DUMPLOG,dir\\file",
    "DUMPLOG,dir/file.xml",
    "DUMPLOG,./",
    "DUMPLOG," + "f" * 128,
    "DUMPLOG," + "f" * 129,
    "DUMPLOG",
    "DUMPLOG,u,f,g",
    "DISPLAY_SUMMARY,u",
    "BUY,u,S," + "1" * 1100,
]


def services_view(line: str):
    try:
        c = workload.parse_line(line)
    except workload.WorkloadError as exc:
        return ("refused", exc.txn)
    return (c.txn, c.name, c.user, c.symbol, c.amount, c.filename)


def reference_view(line: str):
    item = parse_line(line)
    if isinstance(item, BadLine):
        return ("refused", item.txn)
    return (item.txn, item.name, item.user, item.stock, item.money, item.file)


@pytest.mark.parametrize("line", EDGE_LINES)
def test_the_two_parsers_agree_on_edge_lines(line):
    assert reference_view(line) == services_view(line)


def test_the_two_parsers_agree_on_every_vendored_line():
    for name in FILES:
        for line in (WORKLOADS / name).read_text().splitlines():
            assert reference_view(line) == services_view(line), (name, line)
