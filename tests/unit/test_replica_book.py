"""Replicas against the matcher itself: the L3 book folded from the matcher's market.events
outputs, and the L2 book fed by the public channel's messages (the gateway's own SymbolFeed), agree
with every BookChecksum over long random streams; a lost record or message is a gap, and a
resynchronised replica ends equal."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from services.common.book_checksum import checksum
from services.common.codec import Codec
from services.common.config import Settings
from services.gateway.channels import wire
from services.gateway.channels.public_feed import SymbolFeed
from services.matcher.service import MatcherCore
from services.matcher.state import BUY, SELL
from services.replica.book import Gap, L3Book
from services.replica.channel import L2Replica
from tests.unit.test_matcher_checksum import encoded_stream

CODEC = Codec()
SETTINGS = Settings(topic_prefix="t.")
MARKET = "t.market.events"


def tape(seed: int, n: int, every: int = 20, deep: bool = False):
    """(per command: its market.events records, decoded), and the matcher's final book."""
    part = MatcherCore(SETTINGS, CODEC).fresh(0, 1)
    part.every = every
    commands = []
    for value in encoded_stream(seed, n, deep=deep):
        records = [CODEC.decode(o.value) for o in part.apply(value) if o.topic == MARKET]
        commands.append(records)
    return commands, part.matcher.books["X"]


@pytest.mark.parametrize("seed, deep", [(1, False), (2, True), (3, False)])
def test_an_l3_replica_agrees_with_every_checksum(seed, deep):
    commands, book = tape(seed, 3000, deep=deep)
    replica, checks = L3Book("X"), []
    for records in commands:
        for name, record in records:
            check = replica.apply(name, record)
            if check is not None:
                checks.append(check)
    assert len(checks) >= 20 and all(c.equal for c in checks)
    assert replica.seq == book.seq
    assert replica.levels.checksum() == checksum(book.depth(BUY), book.depth(SELL))
    resting = {o[1]: o[0] for side in (BUY, SELL) for o in book.resting(side)}
    assert {oid: o[2] for oid, o in replica.orders.items()} == resting


def test_a_lost_record_is_a_gap_and_a_replay_ends_equal():
    commands, book = tape(4, 800)
    records = [r for rs in commands for r in rs]
    lost = next(i for i, (name, _) in enumerate(records) if i > 100 and "Checksum" not in name)
    replica = L3Book("X")
    with pytest.raises(Gap):
        for name, record in records[:lost] + records[lost + 1 :]:
            replica.apply(name, record)
    again = L3Book("X")  # resynchronise: the log from the beginning
    checks = [c for name, r in records if (c := again.apply(name, r)) is not None]
    assert checks and all(c.equal for c in checks)
    assert again.levels.checksum() == checksum(book.depth(BUY), book.depth(SELL))


class Server:
    """The public channel in memory: the gateway's SymbolFeed, messages numbered and rendered."""

    def __init__(self, first_levels=None) -> None:
        self.feed = SymbolFeed("X", 0, first_levels or {})
        self.seq = 0

    def lines(self, messages) -> list[dict]:
        out = []
        for m in messages:
            self.seq += 1
            line = wire.render({**m, "seq": self.seq})
            out.append(json.loads(line, parse_float=Decimal))
        return out

    def command(self, records) -> list[dict]:
        messages = []
        for name, record in records:
            messages += self.feed.apply(name, record)
        return self.lines(messages + self.feed.flush())


class Sent:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, message: dict) -> None:
        self.sent.append(message)


def l2_replica(lose: int = 0) -> L2Replica:
    replica = L2Replica("127.0.0.1", 0, [], lose)
    replica.lines = Sent()  # type: ignore[assignment]
    return replica


def test_an_l2_replica_from_the_public_channel_agrees_with_every_checksum():
    commands, book = tape(5, 3000, deep=True)
    server, replica = Server(), l2_replica()
    for message in server.lines(server.feed.snapshot()):
        replica.take(message)
    for records in commands:
        for message in server.command(records):
            replica.take(message)
    tally = replica.tallies["X"]
    assert tally.checks >= 20 and tally.mismatches == 0
    assert replica.gaps == 0
    assert replica.books["X"].levels.checksum() == checksum(book.depth(BUY), book.depth(SELL))


def test_an_l2_replica_that_loses_a_message_resynchronises_and_ends_equal():
    commands, book = tape(6, 1500)
    server, replica = Server(), l2_replica(lose=200)
    for message in server.lines(server.feed.snapshot()):
        replica.take(message)
    resynced = False
    for records in commands:
        for message in server.command(records):
            replica.take(message)
        if replica.lines.sent and not resynced:  # it asked for a fresh snapshot: send one
            assert replica.lines.sent == [{"message": "subscribe", "symbol": "X"}]
            for message in server.lines(server.feed.snapshot()):
                replica.take(message)
            resynced = True
    assert replica.gaps == 1 and resynced
    tally = replica.tallies["X"]
    assert tally.mismatches == 0 and tally.last is not None and tally.last.equal
    assert replica.books["X"].levels.checksum() == checksum(book.depth(BUY), book.depth(SELL))


def test_the_kit_sell_reads_trades_then_levels():
    server = Server()
    env = {"command_id": "c", "key": "X", "ts": 1461763950458236, "reply_to": ""}

    def rec(seq, **fields):
        return {"envelope": env, "seq": seq, **fields}

    bids = {("BUY", 1450000): 30000, ("BUY", 1440000): 30000}
    server.feed = SymbolFeed("X", 3, bids)
    trades = [
        ("marketlog.market.Trade", rec(4, price=1450000, qty=10000, maker_order_id=1,
                                       taker_order_id=4, taker_side="SELL", maker_remaining=0,
                                       taker_remaining=25000)),
        ("marketlog.market.Trade", rec(5, price=1450000, qty=20000, maker_order_id=2,
                                       taker_order_id=4, taker_side="SELL", maker_remaining=0,
                                       taker_remaining=5000)),
        ("marketlog.market.Trade", rec(6, price=1440000, qty=5000, maker_order_id=3,
                                       taker_order_id=4, taker_side="SELL",
                                       maker_remaining=25000, taker_remaining=0)),
    ]  # fmt: skip
    got = [(m["type"], m.get("side"), m["price"], m["quantity"]) for m in server.command(trades)]
    assert got == [
        ("trade", None, 145, 100),
        ("trade", None, 145, 200),
        ("trade", None, 144, 50),
        ("orderbook", "bid", 145, 0),
        ("orderbook", "bid", 144, 250),
    ]
