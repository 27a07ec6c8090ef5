"""The chaos run's day-trader book (bench/daytrade_book.py): what it records from answers, and how
an unknown line is settled against the account's summary."""

from __future__ import annotations

import json

from bench.daytrade_book import Book, parse_answer, summary_of, units


def summary(cash: str, held: str, holdings=None, buys=(), buy_settings=()) -> dict:
    return {
        "user": "dt0",
        "cash": cash,
        "cash_held": held,
        "holdings": holdings or {},
        "pending_buys": list(buys),
        "pending_sells": [],
        "buy_settings": list(buy_settings),
        "sell_settings": [],
    }


def traded() -> Book:
    book = Book()
    book.told("ADD,dt0,100000.00", parse_answer("[1] OK,ADD,100000.00"), 0.0)
    book.told("BUY,dt0,DTA,1000.00", parse_answer("[2] OK,BUY,DTA,7,138.41,968.87"), 1.0)
    return book


def test_units_are_exact():
    assert units("1") == 1_000_000
    assert units("968.87") == 968_870_000
    assert units("0.000001") == 1


def test_the_book_follows_the_answers():
    book = traded()
    assert (book.cash, book.held) == (units("99031.13"), units("968.87"))
    assert book.next_line("dt0", 0, 3) == "COMMIT_BUY,dt0"
    book.told("COMMIT_BUY,dt0", parse_answer("[3] OK,COMMIT_BUY,DTA,7,138.41,968.87"), 2.0)
    assert (book.held, book.paid, book.holdings["DTA"], book.bought["DTA"]) == (
        0,
        units("968.87"),
        7,
        7,
    )
    assert book.next_line("dt0", 0, 1) == "SELL,dt0,DTA,484.43"  # 3.5 shares at the last price
    book.told("SELL,dt0,DTA,484.43", parse_answer("[4] OK,SELL,DTA,3,138.00,414.00"), 3.0)
    book.told("COMMIT_SELL,dt0", parse_answer("[5] OK,COMMIT_SELL,DTA,3,138.00,414.00"), 4.0)
    assert (book.cash, book.received, book.holdings["DTA"]) == (units("99445.13"), units("414"), 4)


def test_a_reserve_and_its_trigger():
    book = traded()
    book.told("CANCEL_BUY,dt0", parse_answer("[3] OK,CANCEL_BUY,DTA,7,138.41,968.87"), 2.0)
    book.told("SET_BUY_AMOUNT,dt0,DTB,500.00", parse_answer("[4] OK,SET_BUY_AMOUNT,DTB,500.00"), 3)
    assert book.next_line("dt0", 0, 0) == "SET_BUY_TRIGGER,dt0,DTB,0.01"
    book.told(
        "SET_BUY_TRIGGER,dt0,DTB,0.01", parse_answer("[5] OK,SET_BUY_TRIGGER,DTB,0.01,500.00"), 4
    )
    assert book.shows(
        summary(
            "99500.00",
            "500.00",
            buy_settings=[{"symbol": "DTB", "amount": "500.00", "trigger": "0.01"}],
        )
    )
    book.told("CANCEL_SET_BUY,dt0,DTB", parse_answer("[6] OK,CANCEL_SET_BUY,DTB,500.00"), 5)
    assert (book.cash, book.held, book.reserves, book.triggers) == (units("100000"), 0, {}, set())


def test_an_unknown_commit_is_settled_by_the_summary():
    book = traded()
    committed = summary("99031.13", "0.00", {"DTA": 7})
    outcomes = book.outcomes("COMMIT_BUY,dt0", 3, 2.0, committed, now=10.0)
    assert [b.shows(committed) for b in outcomes] == [False, True, False, True]
    not_committed = summary(
        "99031.13",
        "968.87",
        buys=[
            {
                "symbol": "DTA",
                "shares": 7,
                "price": "138.41",
                "cost": "968.87",
                "txn": 2,
                "expires_ms": 0,
            }
        ],
    )
    outcomes = book.outcomes("COMMIT_BUY,dt0", 3, 2.0, not_committed, now=10.0)
    assert [b.shows(not_committed) for b in outcomes] == [True, False, True, False]


def test_a_pending_buy_may_expire_only_a_minute_after_it_was_sent():
    book = traded()
    expired = summary("100000.00", "0.00")
    assert not any(
        b.shows(expired) for b in book.outcomes("COMMIT_BUY,dt0", 3, 2.0, expired, now=30.0)
    )
    outcomes = book.outcomes("COMMIT_BUY,dt0", 3, 2.0, expired, now=70.0)
    assert [b.shows(expired) for b in outcomes] == [False, False, True, False]


def test_an_unknown_buy_is_decided_if_its_txn_is_pending():
    book = Book()
    book.told("ADD,dt0,100000.00", parse_answer("[1] OK,ADD,100000.00"), 0.0)
    pending = [
        {
            "symbol": "DTB",
            "shares": 2,
            "price": "400.00",
            "cost": "800.00",
            "txn": 2,
            "expires_ms": 0,
        }
    ]
    shown = summary("99200.00", "800.00", buys=pending)
    outcomes = book.outcomes("BUY,dt0,DTB,1000.00", 2, 1.0, shown, now=2.0)
    assert [b.shows(shown) for b in outcomes] == [False, True, False, True]  # nothing expired yet


def test_answers_are_parsed():
    answer = parse_answer('[9] OK,DISPLAY_SUMMARY,{"user":"dt0","holdings":{"A":1,"B":2}}\n')
    assert (answer.txn, answer.ok, summary_of(answer)["holdings"]) == (9, True, {"A": 1, "B": 2})
    error = parse_answer(
        "[5] ERROR,COMMIT_SELL,no_pending_sell,no SELL in the last 60 seconds, none\n"
    )
    assert (error.ok, error.code, error.command) == (False, "no_pending_sell", "COMMIT_SELL")
    assert json.loads(json.dumps(summary("1", "0")))["cash"] == "1"
