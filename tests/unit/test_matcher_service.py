"""The matcher's Kafka shell without Kafka: Avro in, the right records on the right keys out."""

from __future__ import annotations

import pytest

from services.common.codec import Codec
from services.common.config import Settings
from services.matcher.service import MatcherCore
from tests.unit.reference_book import random_stream

CODEC = Codec()
SETTINGS = Settings(topic_prefix="t.")
MARKET, LEDGER = "t.market.events", "t.ledger.commands"


def envelope(n: int, symbol: str = "X", ts: int = 1_700_000_000_000_000) -> dict:
    return {"command_id": f"cmd-{n}", "key": symbol, "ts": ts + n, "reply_to": "gw-1"}


def place(n, oid, account, side, price, qty, **extra) -> bytes:
    rec = {"envelope": envelope(n), "account": account, "order_id": oid, "side": side,
           "price": price, "qty": qty, **extra}  # fmt: skip
    return CODEC.encode("marketlog.match.PlaceOrder", rec)


def cancel(n, oid, account) -> bytes:
    rec = {"envelope": envelope(n), "account": account, "order_id": oid}
    return CODEC.encode("marketlog.match.CancelOrder", rec)


def decoded(outputs) -> list[tuple[str, str, str, dict]]:
    return [(o.topic, o.key, *CODEC.decode(o.value)) for o in outputs]


@pytest.fixture
def part():
    return MatcherCore(SETTINGS, CODEC).fresh(0, 4)


def test_worked_example_settles_both_sides(part):
    for n, (oid, side, price, qty) in enumerate(
        [
            (1, "BUY", 125, 300),
            (2, "SELL", 130, 100),
            (3, "BUY", 127, 200),
            (4, "SELL", 128, 500),
            (5, "SELL", 140, 200),
            (6, "BUY", 125, 400),
        ]
    ):
        (out,) = decoded(part.apply(place(n, oid, f"a{oid}", side, price * 10**4, qty * 100)))
        assert out[:3] == (MARKET, "X", "marketlog.market.OrderRested")
    got = decoded(part.apply(place(7, 7, "a7", "SELL", 124 * 10**4, 40000)))
    assert [(t, k, n) for t, k, n, _ in got] == [
        (MARKET, "X", "marketlog.market.Trade"),
        (LEDGER, "a3", "marketlog.ledger.Fill"),
        (LEDGER, "a7", "marketlog.ledger.Fill"),
        (MARKET, "X", "marketlog.market.Trade"),
        (LEDGER, "a1", "marketlog.ledger.Fill"),
        (LEDGER, "a7", "marketlog.ledger.Fill"),
    ]
    trade, maker, taker = got[0][3], got[1][3], got[2][3]
    assert trade == {
        "envelope": envelope(7), "seq": 7, "price": 1_270_000, "qty": 20000,
        "maker_order_id": 3, "taker_order_id": 7, "taker_side": "SELL",
        "maker_remaining": 0, "taker_remaining": 20000,
    }  # fmt: skip
    assert maker == {
        "envelope": {**envelope(7), "key": "a3"}, "order_id": 3, "symbol": "X", "side": "BUY",
        "price": 1_270_000, "qty": 20000, "remaining": 0, "seq": 7, "role": "MAKER",
    }  # fmt: skip
    assert taker["role"] == "TAKER" and taker["side"] == "SELL" and taker["remaining"] == 20000
    assert got[3][3]["price"] == 1_250_000 and got[4][3]["order_id"] == 1
    assert got[4][3]["remaining"] == 10000 and got[5][3]["remaining"] == 0


def test_cancel_closes_and_unknown_cancel_is_a_private_reject(part):
    part.apply(place(1, 1, "a1", "BUY", 10**6, 500))
    got = decoded(part.apply(cancel(2, 1, "a1")))
    assert [(t, k, n) for t, k, n, _ in got] == [
        (MARKET, "X", "marketlog.market.OrderCancelled"),
        (LEDGER, "a1", "marketlog.ledger.OrderClosed"),
    ]
    assert got[0][3]["reason"] == "USER" and got[0][3]["rested"] and got[0][3]["qty"] == 500
    assert got[1][3] == {"envelope": {**envelope(2), "key": "a1"}, "order_id": 1, "symbol": "X",
                         "side": "BUY", "qty": 500, "reason": "USER", "seq": 2}  # fmt: skip
    ((topic, key, name, rec),) = decoded(part.apply(cancel(3, 1, "a1")))
    assert (topic, key, name) == (LEDGER, "a1", "marketlog.ledger.MatchRejected")
    assert rec["reason"] == "unknown order" and rec["new_order_id"] is None


def test_refused_placement_releases_its_hold(part):
    ((topic, key, name, rec),) = decoded(part.apply(place(1, 9, "a9", "BUY", 10**6, 0)))
    assert (topic, key, name) == (LEDGER, "a9", "marketlog.ledger.OrderClosed")
    assert rec["reason"] == "REJECTED" and rec["seq"] is None


def test_no_account_ids_on_the_public_tape(part):
    for n, command in enumerate(random_stream(3, 800)):
        if command[0] != "place":
            continue
        _, _, oid, account, side, price, qty, tif, expire_ts, post_only, stp, budget, lot = command
        extra = {"tif": tif, "expire_ts": expire_ts, "post_only": post_only, "stp": stp,
                 "budget": budget, "lot": lot}  # fmt: skip
        for topic, key, _, rec in decoded(
            part.apply(place(n, oid, account, side, price, qty, **extra))
        ):
            if topic == MARKET:
                assert key == "X" and "account" not in str(rec) and account not in rec.values()


def test_fast_and_generic_encodings_are_identical():
    """Every kind of event through the hand-written Avro and through the Codec."""
    core = MatcherCore(SETTINGS, CODEC)
    fast, generic = core.fresh(0, 4), core.fresh(0, 4)
    generic._encode = generic.outputs_generic
    kinds = set()
    for n, command in enumerate(random_stream(11, 3000)):
        op, ts, oid = command[0], command[1], command[2]
        env = envelope(n, ts=ts)
        if op == "place":
            _, _, _, acct, side, price, qty, tif, exp, post, stp, budget, lot = command
            rec = {"envelope": env, "account": acct, "order_id": oid, "side": side, "price": price,
                   "qty": qty, "tif": tif, "expire_ts": exp, "post_only": post, "stp": stp,
                   "budget": budget, "lot": lot}  # fmt: skip
            value = CODEC.encode("marketlog.match.PlaceOrder", rec)
        elif op == "cancel":
            value = cancel(n, oid, "a")
        elif op == "reduce":
            rec = {"envelope": env, "account": "b", "order_id": oid, "qty": command[4]}
            value = CODEC.encode("marketlog.match.ReduceOrder", rec)
        else:
            rec = {"envelope": env, "account": "c", "order_id": oid, "new_order_id": command[4],
                   "price": command[5], "qty": command[6]}  # fmt: skip
            value = CODEC.encode("marketlog.match.ReplaceOrder", rec)
        got, want = fast.apply(value), generic.apply(value)
        assert got == want, f"command {n}"
        kinds.update(CODEC.decode(o.value)[0] for o in got)
    assert len(kinds) == 8  # every public and settlement record type was produced


def test_bad_input_is_skipped_not_raised(part, caplog):
    assert part.apply(b"not avro at all") == []
    deposit = {"envelope": envelope(1), "account": "a", "amount": 5}
    assert part.apply(CODEC.encode("marketlog.ledger.Deposit", deposit)) == []
    value = place(2, 1, "a1", "BUY", 10**6, 500)
    assert part.apply(value[:-3]) == []
    assert "skipping" in caplog.text
    assert len(part.apply(value)) == 1  # the loop goes on


def test_restored_partition_decides_as_the_original():
    core = MatcherCore(SETTINGS, CODEC)
    a = core.fresh(0, 4)
    values = [place(n, n + 1, f"a{n % 3}", "BUY" if n % 2 else "SELL", (100 + n % 7) * 10**4, 300)
              for n in range(200)]  # fmt: skip
    for v in values[:120]:
        a.apply(v)
    b = core.restore(0, 4, a.snapshot())
    assert b.exchange.state_hash() == a.exchange.state_hash()
    for v in values[120:]:
        assert b.apply(v) == a.apply(v)


def test_duplicate_order_id_releases_nothing(part):
    part.apply(place(1, 5, "a5", "BUY", 10**6, 100))
    ((topic, key, name, rec),) = decoded(part.apply(place(2, 5, "a5", "BUY", 10**6, 300)))
    assert (topic, key, name) == (LEDGER, "a5", "marketlog.ledger.MatchRejected")
    assert rec["reason"] == "duplicate order id"
