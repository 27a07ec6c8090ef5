"""The projector's fold of the day-trading decisions: audit entries, balances and their day-trading
flows, armed triggers, day-trading shares, accounts an ADD created (docs/daytrading.md, *Audit
log*; docs/projector.md). The decisions are hand-made in the shape of the ledger's records and
checked to encode with the real codec; ``scenario`` is shared with the integration test."""

from __future__ import annotations

import itertools

import pytest

from services.common.codec import Codec
from services.projector import rows
from services.projector.rows import ACCOUNT, Event

A = "marketlog.account."
C = 10_000  # cash units per cent
P = 100  # price units per cent
T0 = 1_767_225_600_000_000  # 2026-01-01, µs
TICKER = "marketlog-ticker"


def envelope(command_id: str, key: str, ts: int) -> dict:
    return {"command_id": command_id, "key": key, "ts": ts, "reply_to": ""}


def quote(symbol: str, user: str, cents: int, hit: bool, ms: int) -> dict:
    key = f"key{symbol}{user}{ms}".ljust(40, "A")[:40]
    return {
        "price": cents * P,
        "symbol": symbol,
        "user": user,
        "quote_server_time": ms,
        "cryptokey": key,
        "hit": hit,
    }


def decided(command: str, user: str, txn: int, ts: int, *, cash: int, held: int = 0, **kw) -> tuple:
    record = {
        "envelope": envelope(f"c{txn}", user, ts),
        "command": command,
        "user": user,
        "txn": txn,
        "symbol": None,
        "amount": None,
        "trigger": None,
        "filename": None,
        "quote": None,
        "ok": True,
        "code": "",
        "message": "",
        "shares": None,
        "price": None,
        "funds": None,
        "cash_change": 0,
        "cash": cash,
        "held": held,
        "summary": None,
    }
    record.update(kw)
    return A + "DayTradeDecided", record


def released(user: str, txn: int, ts: int, side: str, **kw) -> tuple:
    """PendingExpired / TriggerFired fields (``side`` BUY or SELL)."""
    record = {
        "envelope": envelope(f"x{txn}-{ts}", user, ts),
        "user": user,
        "side": side,
        "txn": txn,
    }
    record.update(kw)
    return record


def scenario() -> list[tuple[str, dict]]:
    """Two day traders and a tick, as the ledger would decide them, in log order.

    alice: ADD 1000, QUOTE ABC (hit), BUY ABC 100 at 12.34 (cached quote: 8 shares, 98.72),
    COMMIT_BUY, SELL ABC 50 at 12.50 (hit: 4 shares), COMMIT_SELL, SET_BUY_AMOUNT XYZ 100,
    SET_BUY_TRIGGER XYZ 20 -> a tick at 19.00 fires it (5 shares, 95.00; 5.00 back), SET_SELL
    ABC 40 / trigger 10 (4 reserved) / CANCEL_SET_SELL, DUMPLOG alice.xml.
    bob: BUY before any ADD (unknown_user; its quote was a hit) in the same ms as alice's
    SET_BUY_TRIGGER with a higher number, ADD 50, BUY ABC 20 (1 share), 61 s later
    DISPLAY_SUMMARY (the sweep releases the BUY first), SET_BUY_AMOUNT XYZ 10, SET_BUY_TRIGGER
    XYZ 5 (still armed at the end). Then the admin DUMPLOG ./testLOG."""
    ms = 1000
    t = T0
    out: list[tuple[str, dict]] = []
    add = out.append
    add(
        decided("ADD", "alice", 1, t, amount=100_000 * C, cash_change=100_000 * C, cash=100_000 * C)
    )
    t += ms
    add(
        decided(
            "QUOTE", "alice", 2, t, symbol="ABC", quote=quote("ABC", "alice", 1234, True, t // ms),
            cash=100_000 * C,
        )
    )  # fmt: skip
    t += ms
    add(
        decided(
            "BUY", "alice", 3, t, symbol="ABC", amount=10_000 * C,
            quote=quote("ABC", "alice", 1234, False, t // ms - 1), shares=8, price=1234 * P,
            funds=9872 * C, cash_change=-9872 * C, cash=90_128 * C, held=9872 * C,
        )
    )  # fmt: skip
    t += ms
    add(
        decided(
            "COMMIT_BUY", "alice", 4, t, symbol="ABC", shares=8, price=1234 * P, funds=9872 * C,
            cash=90_128 * C,
        )
    )  # fmt: skip
    t += ms
    add(
        decided(
            "SELL", "alice", 5, t, symbol="ABC", amount=5000 * C,
            quote=quote("ABC", "alice", 1250, True, t // ms), shares=4, price=1250 * P,
            funds=5000 * C, cash=90_128 * C,
        )
    )  # fmt: skip
    t += ms
    add(
        decided(
            "COMMIT_SELL", "alice", 6, t, symbol="ABC", shares=4, price=1250 * P, funds=5000 * C,
            cash_change=5000 * C, cash=95_128 * C,
        )
    )  # fmt: skip
    t += ms
    add(
        decided(
            "SET_BUY_AMOUNT", "alice", 7, t, symbol="XYZ", amount=10_000 * C, funds=10_000 * C,
            cash_change=-10_000 * C, cash=85_128 * C, held=10_000 * C,
        )
    )  # fmt: skip
    t += ms
    # same ms: bob's BUY [9] is logged first, alice's SET_BUY_TRIGGER [8] must come first
    add(
        decided(
            "BUY", "bob", 9, t + 100, symbol="ABC", amount=1000 * C,
            quote=quote("ABC", "bob", 1234, True, t // ms), ok=False, code="unknown_user",
            message="unknown user bob", cash=0,
        )
    )  # fmt: skip
    add(
        decided(
            "SET_BUY_TRIGGER", "alice", 8, t + 200, symbol="XYZ", trigger=2000 * P,
            price=2000 * P, funds=10_000 * C, cash=85_128 * C, held=10_000 * C,
        )
    )  # fmt: skip
    t += ms
    tick = t
    add((A + "QuoteTicked", {"envelope": envelope("tick1", "XYZ", tick),
                             "quote": quote("XYZ", TICKER, 1900, True, tick // ms)}))  # fmt: skip
    add(
        (
            A + "TriggerFired",
            released(
                "alice", 8, tick, "BUY", symbol="XYZ", shares=5, price=1900 * P, funds=9500 * C,
                cash_change=500 * C, cash=85_628 * C, held=0,
            ),
        )
    )  # fmt: skip
    t += ms
    add(decided("ADD", "bob", 10, t, amount=5000 * C, cash_change=5000 * C, cash=5000 * C))
    t += ms
    add(
        decided(
            "BUY", "bob", 11, t, symbol="ABC", amount=2000 * C,
            quote=quote("ABC", "bob", 1234, True, t // ms), shares=1, price=1234 * P,
            funds=1234 * C, cash_change=-1234 * C, cash=3766 * C, held=1234 * C,
        )
    )  # fmt: skip
    t += 61_000 * ms
    add(
        (
            A + "PendingExpired",
            released(
                "bob", 11, t, "BUY", symbol="ABC", shares=1, price=1234 * P, funds=1234 * C,
                cash_change=1234 * C, cash=5000 * C, held=0,
            ),
        )
    )  # fmt: skip
    add(decided("DISPLAY_SUMMARY", "bob", 12, t, cash=5000 * C, summary="{}"))
    t += ms
    add(
        decided(
            "SET_SELL_AMOUNT", "alice", 13, t, symbol="ABC", amount=4000 * C, funds=4000 * C,
            shares=0, cash=85_628 * C,
        )
    )  # fmt: skip
    t += ms
    add(
        decided(
            "SET_SELL_TRIGGER", "alice", 14, t, symbol="ABC", trigger=1000 * P, price=1000 * P,
            shares=4, cash=85_628 * C,
        )
    )  # fmt: skip
    t += ms
    add(decided("CANCEL_SET_SELL", "alice", 15, t, symbol="ABC", shares=4, cash=85_628 * C))
    t += ms
    add(
        decided(
            "SET_BUY_AMOUNT", "bob", 16, t, symbol="XYZ", amount=1000 * C, funds=1000 * C,
            cash_change=-1000 * C, cash=4000 * C, held=1000 * C,
        )
    )  # fmt: skip
    t += ms
    add(
        decided(
            "SET_BUY_TRIGGER", "bob", 17, t, symbol="XYZ", trigger=500 * P, price=500 * P,
            funds=1000 * C, cash=4000 * C, held=1000 * C,
        )
    )  # fmt: skip
    t += ms
    add(decided("DUMPLOG", "alice", 18, t, filename="alice.xml", cash=85_628 * C))
    t += ms
    add(decided("DUMPLOG", "", 19, t, filename="./testLOG", cash=0))
    return out


# what the scenario's DUMPLOGs hold, per element
ADMIN_COUNTS = {
    "userCommand": 19,
    "quoteServer": 5,
    "accountTransaction": 9,
    "systemEvent": 1,
    "errorEvent": 1,
}
ALICE_COUNTS = {"userCommand": 12, "quoteServer": 2, "accountTransaction": 5, "systemEvent": 1}


def as_events(records: list[tuple[str, dict]]) -> list[Event]:
    """In one partition, offsets in log order."""
    return [Event(ACCOUNT, 0, n, name, r) for n, (name, r) in enumerate(records)]


def test_the_scenario_encodes_with_the_real_schemas():
    codec = Codec()
    for name, record in scenario():
        assert codec.decode(codec.encode(name, record)) == (name, record)


def test_entries_per_record():
    batch = rows.fold(as_events(scenario()))
    kinds = [rows.KIND_NAMES[e[2]] for e in batch.entries]
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert counts == ADMIN_COUNTS
    by_txn = {}
    for e in batch.entries:
        by_txn.setdefault(e[1], []).append(e)
    # ADD: userCommand with the amount, an add of the same amount
    add_cmd, add_cash = sorted(by_txn[1], key=lambda e: e[2])
    assert add_cmd[2:9] == (rows.USER_COMMAND, 0, 0, "alice", "ADD", None, 100_000 * C)
    assert add_cash[12] == "add" and add_cash[8] == 100_000 * C
    # the cached quote of BUY logs nothing; the QUOTE's hit logs the quote as the server sent it
    assert [e[2] for e in by_txn[3]] == [rows.USER_COMMAND, rows.ACCOUNT_TRANSACTION]
    quote_entry = next(e for e in by_txn[2] if e[2] == rows.QUOTE_SERVER)
    assert quote_entry[5:12] == ("alice", None, "ABC", None, 1234 * P, (T0 + 1000) // 1000,
                                 quote_entry[11])  # fmt: skip
    # COMMIT_BUY's decision names the pending entry's symbol; the command itself has none
    (commit,) = by_txn[4]
    assert commit[6:9] == ("COMMIT_BUY", None, None)
    # the trigger: its number is the SET_BUY_TRIGGER's, funds the cost, plus an add of the rest
    trigger_entries = sorted(
        (e for e in by_txn[8] if e[2] != rows.USER_COMMAND), key=lambda e: e[2]
    )
    assert [(e[2], e[6], e[8], e[12]) for e in trigger_entries] == [
        (rows.ACCOUNT_TRANSACTION, None, 500 * C, "add"),
        (rows.SYSTEM_EVENT, "SET_BUY_TRIGGER", 9500 * C, None),
    ]
    # SET_BUY_TRIGGER's userCommand shows the trigger price as money
    set_trigger = next(e for e in by_txn[8] if e[2] == rows.USER_COMMAND)
    assert set_trigger[8] == 2000 * C
    # bob's refused BUY: userCommand, the quote hit, errorEvent "code: sentence"; no cash entry
    assert sorted(e[2] for e in by_txn[9]) == [rows.USER_COMMAND, rows.QUOTE_SERVER, 4]
    error = next(e for e in by_txn[9] if e[2] == rows.ERROR_EVENT)
    assert error[5:9] == ("bob", "BUY", "ABC", 1000 * C)
    assert error[14] == "unknown_user: unknown user bob"
    # the expiry release: an add with the BUY's number
    expiry = [e for e in by_txn[11] if e[12] == "add"]
    assert len(expiry) == 1 and expiry[0][8] == 1234 * C
    # the admin DUMPLOG's userCommand has no username, but its file name
    (admin,) = by_txn[19]
    assert admin[5:9] == (None, "DUMPLOG", None, None) and admin[13] == "./testLOG"
    # the tick's quote: the ticker's userid; transactionNum 1 + its offset (no txn in the record)
    tick = next(e for e in batch.entries if e[5] == TICKER)
    assert tick[2] == rows.QUOTE_SERVER and tick[1] == tick[4] + 1


def test_balances_carry_the_day_trading_flows():
    batch = rows.fold(as_events(scenario()))
    alice, bob = batch.balances["alice"], batch.balances["bob"]
    assert (alice.available, alice.held) == (85_628 * C, 0)
    assert (alice.dt_added, alice.dt_paid, alice.dt_received, alice.dt_held) == (
        100_000 * C,
        (9872 + 9500) * C,
        5000 * C,
        0,
    )
    assert (bob.available, bob.held, bob.dt_added, bob.dt_held) == (4000 * C, 1000 * C, 5000 * C,
                                                                     1000 * C)  # fmt: skip
    for b in (alice, bob):  # conservation: what came in - went out = available + held
        assert b.dt_added - b.dt_paid + b.dt_received == b.available + b.held
        assert b.added == b.removed == 0
    assert "" not in batch.balances  # the admin DUMPLOG is nobody's
    # accounts an ADD created (initial balance 0: the ADD is a day-trading deposit)
    assert set(batch.dt_accounts) == {"alice", "bob"}
    assert batch.dt_accounts["bob"][:2] == ("bob", 0)


def test_a_refused_command_of_an_unknown_user_makes_no_balance():
    name, record = decided(
        "COMMIT_BUY", "nobody", 1, T0, ok=False, code="unknown_user", message="unknown user", cash=0
    )
    quote_only = decided("QUOTE", "ghost", 2, T0, symbol="A", cash=0,
                         quote=quote("A", "ghost", 500, True, T0 // 1000))  # fmt: skip
    batch = rows.fold(as_events([(name, record), quote_only]))
    assert batch.balances == {} and batch.dt_accounts == {}
    assert [e[2] for e in batch.entries] == [
        rows.USER_COMMAND, rows.ERROR_EVENT, rows.USER_COMMAND, rows.QUOTE_SERVER,
    ]  # fmt: skip


def test_triggers_armed_and_disarmed_and_shares():
    batch = rows.fold(as_events(scenario()))
    # alice's buy trigger fired, her sell trigger was cancelled; bob's is armed
    assert batch.triggers == {
        ("alice", "XYZ", "BUY"): None,
        ("alice", "ABC", "SELL"): None,
        ("bob", "XYZ", "BUY"): (500 * P, 17, scenario()[-3][1]["envelope"]["ts"]),
    }
    assert {k: v[:2] for k, v in batch.dt_shares.items()} == {
        ("alice", "ABC"): [8, 4],
        ("alice", "XYZ"): [5, 0],
    }


def test_any_batching_gives_the_same_rows():
    """Entries are appended, flows summed, triggers last-wins: the batches' merge is the same."""
    events = as_events(scenario())
    whole = rows.fold(events)
    for cuts in itertools.combinations(range(1, len(events)), 2):
        parts = [rows.fold(events[a:b]) for a, b in itertools.pairwise([0, *cuts, len(events)])]
        assert [e for p in parts for e in p.entries] == whole.entries
        merged: dict = {}
        for p in parts:
            merged.update(p.triggers)
        assert merged == whole.triggers
        for account, b in whole.balances.items():
            mine = [p.balances[account] for p in parts if account in p.balances]
            assert mine[-1].available == b.available and mine[-1].held == b.held
            for flow in ("dt_added", "dt_paid", "dt_received", "dt_held"):
                assert sum(getattr(m, flow) for m in mine) == getattr(b, flow)


@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_trigger_fired_flows(side):
    cost = 3 * 700 * C
    record = released(
        "u", 5, T0, side, symbol="Q", shares=3, price=700 * P, funds=cost,
        cash_change=(100 * C if side == "BUY" else cost), cash=50_000 * C, held=0,
    )  # fmt: skip
    batch = rows.fold(as_events([(A + "TriggerFired", record)]))
    b = batch.balances["u"]
    if side == "BUY":  # the reserve (cost + 1.00) leaves held: 1.00 back, the cost paid out
        assert (b.dt_paid, b.dt_received, b.dt_held) == (cost, 0, -cost - 100 * C)
        assert batch.dt_shares[("u", "Q")][:2] == [3, 0]
    else:  # the reserved shares are sold, the proceeds arrive
        assert (b.dt_paid, b.dt_received, b.dt_held) == (0, cost, 0)
        assert batch.dt_shares[("u", "Q")][:2] == [0, 3]
    command = [e[6] for e in batch.entries if e[2] == rows.SYSTEM_EVENT]
    assert command == [f"SET_{side}_TRIGGER"]


def test_input_the_gateway_could_not_have_appended_has_no_entries():
    """The ledger refuses it as bad_input (a hostile producer); logfile.xsd could not even name
    an unknown command, and nothing changed: no entry, no balance."""
    hostile = decided("HELLO", "mallory", 1, T0, ok=False, code="bad_input", message="?", cash=0)
    refused = decided("ADD", "mallory", 2, T0, ok=False, code="bad_input", message="?", cash=0)
    batch = rows.fold(as_events([hostile, refused]))
    assert batch.entries == [] and batch.balances == {} and batch.unknown == 2
