"""The gateway's other pure parts: command records and ids, decision matching, token buckets, the
public book view and HTTP order validation; and how the bus turns a delivery report into an
answer."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError

from services.common.codec import Codec
from services.common.config import Settings
from services.gateway import commands as cmd
from services.gateway.bus import AppendError, Bus, DecisionTimeout, Event
from services.gateway.desk import command_ids
from services.gateway.http import models as m
from services.gateway.http.auth import bearer, key_hash, new_key
from services.gateway.market_view import BookView
from services.gateway.ratelimit import Buckets, TokenBucket
from services.gateway.sessions import AccountSessions

STAMP = cmd.Stamp("c0ffee", 1_700_000_000_000_000, "gateway-0-abcd")


def env(key: str, command_id: str = "c0ffee") -> dict:
    return {"command_id": command_id, "key": key, "ts": 1, "reply_to": ""}


def test_every_command_encodes_with_its_schema():
    codec = Codec()
    spec = cmd.OrderSpec("SPY", "BUY", 100, 1250000)
    for command in [
        cmd.create_account(STAMP, "1", 10, "ab" * 32),
        cmd.deposit(STAMP, "1", 5),
        cmd.withdraw(STAMP, "1", 5),
        cmd.create_symbol(STAMP, "SPY", 100, 1),
        cmd.issue_shares(STAMP, "1", "SPY", 100),
        cmd.place_order(STAMP, "1", spec),
        cmd.cancel_order(STAMP, "1", 3),
        cmd.reduce_order(STAMP, "1", 3, 10),
        cmd.replace_order(STAMP, "1", 3, 1, 1),
    ]:
        name, record = codec.decode(codec.encode(command.name, command.record))
        assert name == command.name and record["envelope"]["reply_to"] == "gateway-0-abcd"
        assert command.command_id == "c0ffee"
    assert cmd.create_symbol(STAMP, "SPY").broadcast
    assert cmd.create_symbol(STAMP, "SPY").key == "SPY"
    assert not cmd.deposit(STAMP, "1", 5).broadcast


def test_a_decision_answers_only_its_own_account_and_order():
    place = cmd.place_order(STAMP, "1", cmd.OrderSpec("SPY", "SELL", 1, 1))
    accepted = cmd.ACCOUNT + "OrderAccepted"
    assert cmd.answers(place, accepted, {"envelope": env("1"), "order_id": 9})
    # the other side's fill caused by this command carries its id but is not the answer
    assert not cmd.answers(place, cmd.ACCOUNT + "OrderFilled", {"envelope": env("1")})
    assert not cmd.answers(place, accepted, {"envelope": env("2"), "order_id": 9})
    assert cmd.answers(place, cmd.REJECTED, {"envelope": env("1"), "order_id": None})
    cancel = cmd.cancel_order(STAMP, "1", 3)
    closed = cmd.ACCOUNT + "OrderClosed"
    assert cmd.answers(cancel, closed, {"envelope": env("1"), "order_id": 3})
    assert not cmd.answers(cancel, closed, {"envelope": env("1"), "order_id": 4})
    replace = cmd.replace_order(STAMP, "1", 3, 1, 1)
    assert not cmd.answers(replace, accepted, {"envelope": env("1"), "order_id": 7, "replaces": 3})
    assert cmd.answers(replace, closed, {"envelope": env("1"), "order_id": 3})
    assert not cmd.answers(replace, closed, {"envelope": env("1"), "order_id": 7})


def _decision(name: str, key: str, **fields) -> tuple[str, dict]:
    return cmd.ACCOUNT + name, {"envelope": env(key), **fields}


def test_an_order_placed_is_answered_once_every_settlement_of_its_match_is_heard():
    place = cmd.place_order(STAMP, "1", cmd.OrderSpec("SPY", "BUY", 300, 125))
    reply = cmd.Reply(place, placed=True)
    fill = {"symbol": "SPY", "price": 120, "qty": 100}
    # the counterparty's fill, decided on its own partition, can be heard first
    assert not reply.hear(*_decision("OrderFilled", "2", order_id=4, role="MAKER", **fill))
    assert not reply.hear(*_decision("OrderAccepted", "1", order_id=9, duplicate=False))
    assert reply.accepted and not reply.done
    assert not reply.hear(*_decision("OrderFilled", "1", order_id=9, role="TAKER", **fill))
    # placed, resting the rest: three settlements came before it, one not heard yet
    assert not reply.hear(*_decision("OrderPlaced", "1", order_id=9, open_qty=200, settlements=3))
    assert not reply.hear(*_decision("OrderPlaced", "1", order_id=8, open_qty=0, settlements=0))
    assert reply.hear(*_decision("OrderClosed", "3", order_id=2, qty=0, reason="EXPIRED"))
    assert reply.heard[reply.answer][1]["order_id"] == 9 and len(reply.heard) == 6


def test_an_order_answered_at_acceptance_or_refused_needs_no_placement():
    place = cmd.place_order(STAMP, "1", cmd.OrderSpec("SPY", "BUY", 300, 125))
    assert cmd.Reply(place).hear(*_decision("OrderAccepted", "1", order_id=9, duplicate=False))
    refused = _decision("CommandRejected", "1", command="PlaceOrder", order_id=None)
    assert cmd.Reply(place, placed=True).hear(*refused)
    # a retried client_order_id: the original was placed long ago, nothing new will follow
    retry = _decision("OrderAccepted", "1", order_id=9, duplicate=True)
    assert cmd.Reply(place, placed=True).hear(*retry)
    # a settlement the ledger refused still counts as decided
    reply = cmd.Reply(place, placed=True)
    reply.hear(*_decision("OrderAccepted", "1", order_id=9, duplicate=False))
    reply.hear(*_decision("OrderPlaced", "1", order_id=9, open_qty=0, settlements=1))
    assert reply.hear(*_decision("CommandRejected", "2", command="Fill", order_id=4))


def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    bucket = TokenBucket.full(rate=2, burst=3, now=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert [bucket.take(100) for _ in range(4)] == [True, True, True, False]
    buckets = Buckets(rate=1, burst=1, max_keys=2)
    assert buckets.take("a", 0) and not buckets.take("a", 0) and buckets.take("b", 0)


def test_book_view_turns_events_into_level_totals_and_trades():
    view = BookView.from_rows("X", 5, [{"side": "BUY", "price": 1250000, "qty": 30000}])
    rested = {"envelope": env("X"), "seq": 6, "side": "SELL", "price": 1300000, "qty": 10000}
    assert view.apply(cmd.ACCOUNT + "x", {"seq": 6}) == []  # not a market event: ignored
    view.seq = 5
    (level,) = view.apply("marketlog.market.OrderRested", rested)
    assert (level["side"], level["price"], level["qty"], level["seq"]) == ("SELL", "130", "100", 6)
    trade = {
        "envelope": env("X"),
        "seq": 7,
        "price": 1250000,
        "qty": 30000,
        "taker_side": "SELL",
    }
    gone, printed = view.apply("marketlog.market.Trade", trade)
    assert (gone["side"], gone["qty"]) == ("BUY", "0") and printed["type"] == "trade"
    assert view.apply("marketlog.market.Trade", trade) == []  # already folded in
    snapshot = view.snapshot()
    assert snapshot == {
        "type": "snapshot",
        "symbol": "X",
        "seq": 7,
        "bids": [],
        "asks": [{"price": "130", "qty": "100"}],
    }


def order(**fields) -> m.NewOrder:
    return m.NewOrder(**{"symbol": "SPY", "side": "BUY", "qty": "10", "price": "1.5", **fields})


def test_order_validation_defaults_and_units():
    spec = m.order_spec(order(), now_us=0)
    assert (spec.qty, spec.price, spec.tif, spec.stp) == (1000, 15000, "GTC", "CANCEL_NEWEST")
    market = m.order_spec(order(type="MARKET", price=None, budget="100"), 0)
    assert (market.price, market.tif, market.budget) == (None, "IOC", 100_000_000)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"price": None}, "LIMIT order needs"),
        ({"type": "MARKET"}, "has no price"),
        ({"type": "MARKET", "price": None}, "needs one"),
        ({"type": "MARKET", "price": None, "budget": "1", "tif": "GTC"}, "IOC or FOK"),
        ({"tif": "GTD"}, "expire_ts"),
        ({"tif": "GTD", "expire_ts": 5}, "past"),
        ({"expire_ts": 50}, "only with GTD"),
        ({"budget": "5"}, "only a MARKET BUY"),
        ({"post_only": True, "tif": "IOC"}, "post-only"),
        ({"qty": "0"}, "greater than zero"),
        ({"qty": "-1"}, "negative"),
        ({"qty": "1.001"}, "decimal places"),
        ({"price": "0.00001"}, "decimal places"),
    ],
)
def test_order_validation_refusals(fields, message):
    with pytest.raises(m.InvalidRequest, match=message):
        m.order_spec(order(**fields), now_us=10)


def test_keys_are_random_and_only_their_hash_is_kept():
    key, digest = new_key()
    assert len(key) >= 43 and digest == key_hash(key) and len(digest) == 64
    assert new_key()[0] != key
    assert bearer(f"Bearer {key}") == key and bearer("bearer  x ") == "x"
    assert bearer(None) is None and bearer("Basic abc") is None and bearer("Bearer ") is None


def test_decision_detail_renders_amounts_as_decimals():
    record = {
        "envelope": env("1"),
        "order_id": 3,
        "side": "BUY",
        "price": 1250000,
        "qty": 150,
        "hold": 187_500_000,
        "cash_available": 5,
        "duplicate": False,
    }
    detail = m.decision_detail(record)
    assert detail == {
        "order_id": 3,
        "side": "BUY",
        "price": "125",
        "qty": "1.5",
        "hold": "187.5",
        "cash_available": "0.000005",
        "duplicate": False,
    }


def test_an_account_session_waits_for_every_decision_about_its_account():
    sessions = AccountSessions(limit=2)
    mine = sessions.get("1")
    filled = Event(cmd.ACCOUNT + "OrderFilled", {"envelope": env("1", "other")}, 3, 40)
    sessions.observe(filled)  # a fill another account's order caused
    sessions.observe(Event(cmd.ACCOUNT + "OrderFilled", {"envelope": env("2")}, 3, 41))
    sessions.observe(Event(cmd.ACCOUNT + "OrderAccepted", {"envelope": env("1")}, 3, 39))
    assert mine.offsets == {3: 40}  # its own, the newest per partition
    for other in ("2", "3"):  # past the limit: the least recently used goes
        sessions.get(other)
    sessions.observe(Event(cmd.ACCOUNT + "OrderFilled", {"envelope": env("1")}, 3, 50))
    assert mine.offsets == {3: 40} and sessions.get("1").offsets == {}


def test_command_ids_are_unique_32_hex_digits_per_process():
    first, second = command_ids(), command_ids()
    ids = [next(first) for _ in range(1000)] + [next(second) for _ in range(1000)]
    assert len(set(ids)) == 2000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


class _Written:
    """What a delivery report carries that the bus reads: the record's bytes."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value


def test_a_failed_write_fails_the_commands_decision_and_a_delivered_one_does_nothing():
    async def scenario() -> None:
        # no broker behind this address: the clients are created but never asked for anything
        bus = Bus(Settings(kafka="127.0.0.1:9"), "gateway-0-abcd", decision_timeout=0.2)
        bus._loop = asyncio.get_running_loop()
        lost = cmd.deposit(STAMP, "1", 5)
        kept = cmd.deposit(cmd.Stamp("beef", 1, "gateway-0-abcd"), "2", 5)
        lost_decision, kept_decision = bus.expect(lost), bus.expect(kept)
        value = Codec().encode
        bus._delivered(
            KafkaError(KafkaError._MSG_TIMED_OUT), _Written(value(lost.name, lost.record))
        )
        bus._delivered(None, _Written(value(kept.name, kept.record)))
        with pytest.raises(AppendError, match=r"did not take command c0ffee: .*timed out"):
            await bus.decision(lost, lost_decision)
        with pytest.raises(DecisionTimeout, match="may still be decided"):
            await bus.decision(kept, kept_decision)
        for client in (bus.producer, bus.tail.consumer):
            client.close()  # no reconnect attempts for the rest of the session

    asyncio.run(scenario())
