"""The matcher's Kafka shell without Kafka: Avro in, the right records on the right keys out."""

from __future__ import annotations

import pytest

from services.common.book_checksum import checksum
from services.common.codec import Codec
from services.common.config import Settings
from services.matcher.service import CHECKSUM_EVERY, COMMANDS, OTHER_SIDE, MatcherCore
from services.matcher.state import CANCELLED, REDUCED, REJECTED, RESTED, TRADE, Matcher
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
        out, placed = decoded(part.apply(place(n, oid, f"a{oid}", side, price * 10**4, qty * 100)))
        assert out[:3] == (MARKET, "X", "marketlog.market.OrderRested")
        assert placed[:3] == (LEDGER, f"a{oid}", "marketlog.ledger.OrderPlaced")
        assert placed[3] == {
            "envelope": {**envelope(n), "key": f"a{oid}"}, "order_id": oid, "symbol": "X",
            "side": side, "open_qty": qty * 100, "seq": n + 1, "settlements": 0,
        }  # fmt: skip
    got = decoded(part.apply(place(7, 7, "a7", "SELL", 124 * 10**4, 40000)))
    assert [(t, k, n) for t, k, n, _ in got] == [
        (MARKET, "X", "marketlog.market.Trade"),
        (LEDGER, "a3", "marketlog.ledger.Fill"),
        (LEDGER, "a7", "marketlog.ledger.Fill"),
        (MARKET, "X", "marketlog.market.Trade"),
        (LEDGER, "a1", "marketlog.ledger.Fill"),
        (LEDGER, "a7", "marketlog.ledger.Fill"),
        (LEDGER, "a7", "marketlog.ledger.OrderPlaced"),
    ]
    # filled on arrival: nothing rests, and four settlements (both sides of two fills) came first
    assert got[6][3]["open_qty"] == 0 and got[6][3]["seq"] is None
    assert got[6][3]["settlements"] == 4
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
    (topic, key, name, rec), placed = decoded(part.apply(place(1, 9, "a9", "BUY", 10**6, 0)))
    assert (topic, key, name) == (LEDGER, "a9", "marketlog.ledger.OrderClosed")
    assert rec["reason"] == "REJECTED" and rec["seq"] is None
    assert placed[2] == "marketlog.ledger.OrderPlaced"
    assert (placed[3]["open_qty"], placed[3]["settlements"]) == (0, 1)


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


def expected_records(symbol: str, env: dict, events: list[tuple]) -> list[tuple]:
    """(topic, key, record name, record) each event must become, field by field."""

    def at(key: str) -> dict:
        return {**env, "key": key}

    out = []
    for e in events:
        kind, seq = e[0], e[1]
        if kind == TRADE:
            _, _, _, price, qty, maker, m_acct, taker, t_acct, side, m_rem, t_rem = e
            out.append((MARKET, symbol, "marketlog.market.Trade", {
                "envelope": at(symbol), "seq": seq, "price": price, "qty": qty,
                "maker_order_id": maker, "taker_order_id": taker, "taker_side": side,
                "maker_remaining": m_rem, "taker_remaining": t_rem}))  # fmt: skip
            for acct, oid, s, rem, role in ((m_acct, maker, OTHER_SIDE[side], m_rem, "MAKER"),
                                            (t_acct, taker, side, t_rem, "TAKER")):  # fmt: skip
                out.append((LEDGER, acct, "marketlog.ledger.Fill", {
                    "envelope": at(acct), "order_id": oid, "symbol": symbol, "side": s,
                    "price": price, "qty": qty, "remaining": rem, "seq": seq,
                    "role": role}))  # fmt: skip
        elif kind == RESTED:
            _, _, _, oid, _, side, price, qty = e
            out.append((MARKET, symbol, "marketlog.market.OrderRested", {
                "envelope": at(symbol), "seq": seq, "order_id": oid, "side": side,
                "price": price, "qty": qty}))  # fmt: skip
        elif kind == CANCELLED:
            _, _, _, oid, acct, side, price, qty, reason, rested = e
            out.append((MARKET, symbol, "marketlog.market.OrderCancelled", {
                "envelope": at(symbol), "seq": seq, "order_id": oid, "side": side,
                "price": price, "qty": qty, "reason": reason, "rested": rested}))  # fmt: skip
            out.append((LEDGER, acct, "marketlog.ledger.OrderClosed", {
                "envelope": at(acct), "order_id": oid, "symbol": symbol, "side": side,
                "qty": qty, "reason": reason, "seq": seq}))  # fmt: skip
        elif kind == REDUCED:
            _, _, _, oid, acct, side, price, qty, rem, rested = e
            out.append((MARKET, symbol, "marketlog.market.OrderReduced", {
                "envelope": at(symbol), "seq": seq, "order_id": oid, "side": side,
                "price": price, "qty": qty, "remaining": rem, "rested": rested}))  # fmt: skip
            out.append((LEDGER, acct, "marketlog.ledger.OrderReduced", {
                "envelope": at(acct), "order_id": oid, "symbol": symbol, "side": side,
                "qty": qty, "remaining": rem, "seq": seq}))  # fmt: skip
        elif kind == REJECTED:
            _, _, _, oid, acct, side, qty, new_oid, reason = e
            acct = acct or ""
            if qty is not None and side in OTHER_SIDE:
                out.append((LEDGER, acct, "marketlog.ledger.OrderClosed", {
                    "envelope": at(acct), "order_id": oid, "symbol": symbol, "side": side,
                    "qty": qty, "reason": "REJECTED", "seq": None}))  # fmt: skip
            else:
                out.append((LEDGER, acct, "marketlog.ledger.MatchRejected", {
                    "envelope": at(acct), "order_id": oid, "symbol": symbol,
                    "new_order_id": new_oid, "reason": reason}))  # fmt: skip
    return out


def expected_checksum(book, env, before) -> list[tuple]:
    """A BookChecksum when the command's events passed a multiple of the interval, from the
    twin's full depth (not the service's top-levels shortcut)."""
    if book.seq // CHECKSUM_EVERY == before // CHECKSUM_EVERY:
        return []
    crc = checksum(book.depth("BUY"), book.depth("SELL"))
    return [(MARKET, book.symbol, "marketlog.market.BookChecksum", {
        "envelope": {**env, "key": book.symbol}, "seq": book.seq, "depth": 10,
        "checksum": crc})]  # fmt: skip


def expected_placed(symbol, env, acct, oid, side, events, out) -> list[tuple]:
    """A placement's last record, after everything else it caused: what of it rests (the
    OrderRested of its id) and how many ledger records came before; none for a refused replace."""
    if any(e[0] == REJECTED and e[7] is not None for e in events):
        return []
    rested = [e for e in events if e[0] == RESTED and e[3] == oid]
    open_qty, seq = (rested[0][7], rested[0][1]) if rested else (0, None)
    return [(LEDGER, acct, "marketlog.ledger.OrderPlaced", {
        "envelope": {**env, "key": acct}, "order_id": oid, "symbol": symbol, "side": side,
        "open_qty": open_qty, "seq": seq,
        "settlements": sum(1 for o in out if o[0] == LEDGER)})]  # fmt: skip


def test_every_output_carries_its_event_field_by_field():
    """Values tuples in schema order: a twin book's events, as records built by field name."""
    part, twin = MatcherCore(SETTINGS, CODEC).fresh(0, 4), Matcher()
    kinds = set()
    for n, command in enumerate(random_stream(11, 3000)):
        op, ts, oid = command[0], command[1], command[2]
        env = envelope(n, ts=ts)
        if op == "place":
            _, _, _, acct, side, price, qty, tif, exp, post, stp, budget, lot = command
            name = "marketlog.match.PlaceOrder"
            rec = {"envelope": env, "account": acct, "order_id": oid, "side": side, "price": price,
                   "qty": qty, "tif": tif, "expire_ts": exp, "post_only": post, "stp": stp,
                   "budget": budget, "lot": lot}  # fmt: skip
        elif op == "cancel":
            name, rec = (
                "marketlog.match.CancelOrder",
                {"envelope": env, "account": "a", "order_id": oid},
            )
        elif op == "reduce":
            name = "marketlog.match.ReduceOrder"
            rec = {"envelope": env, "account": "b", "order_id": oid, "qty": command[4]}
        else:
            name = "marketlog.match.ReplaceOrder"
            rec = {"envelope": env, "account": "c", "order_id": oid, "new_order_id": command[4],
                   "price": command[5], "qty": command[6]}  # fmt: skip
        method, fields = COMMANDS[name]
        before = twin.book(env["key"]).seq
        events = method(twin.book(env["key"]), env["ts"], *(rec[f] for f in fields))
        got = decoded(part.apply(CODEC.encode(name, rec)))
        expected = expected_records(env["key"], env, events)
        if op == "place":
            expected += expected_placed(env["key"], env, acct, oid, side, events, expected)
        elif op == "replace":
            old = [e for e in events if e[0] == CANCELLED and e[8] == "REPLACED"]
            side = old[0][5] if old else None
            expected += expected_placed(env["key"], env, "c", command[4], side, events, expected)
        expected += expected_checksum(twin.book(env["key"]), env, before)
        assert got == expected, f"command {n}"
        kinds.update(name for _, _, name, _ in got)
    assert len(kinds) == 10  # every public and settlement record type, and the checksum


def test_bad_input_is_skipped_not_raised(part, caplog):
    assert part.apply(b"not avro at all") == []
    deposit = {"envelope": envelope(1), "account": "a", "amount": 5}
    assert part.apply(CODEC.encode("marketlog.ledger.Deposit", deposit)) == []
    value = place(2, 1, "a1", "BUY", 10**6, 500)
    assert part.apply(value[:-3]) == []
    assert "skipping" in caplog.text
    assert len(part.apply(value)) == 2  # the loop goes on: rested, placed


def test_restored_partition_decides_as_the_original():
    core = MatcherCore(SETTINGS, CODEC)
    a = core.fresh(0, 4)
    values = [place(n, n + 1, f"a{n % 3}", "BUY" if n % 2 else "SELL", (100 + n % 7) * 10**4, 300)
              for n in range(200)]  # fmt: skip
    for v in values[:120]:
        a.apply(v)
    b = core.restore(0, 4, a.snapshot())
    assert b.matcher.state_hash() == a.matcher.state_hash()
    for v in values[120:]:
        assert b.apply(v) == a.apply(v)


def test_duplicate_order_id_releases_nothing(part):
    part.apply(place(1, 5, "a5", "BUY", 10**6, 100))
    (topic, key, name, rec), _ = decoded(part.apply(place(2, 5, "a5", "BUY", 10**6, 300)))
    assert (topic, key, name) == (LEDGER, "a5", "marketlog.ledger.MatchRejected")
    assert rec["reason"] == "duplicate order id"
