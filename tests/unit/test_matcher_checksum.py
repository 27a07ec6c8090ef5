"""The matcher's book checksum (services/common/book_checksum.py) and its BookChecksum records:
the documented string, the cadence, determinism over snapshots, the top levels against the full
depth."""

from __future__ import annotations

import zlib

from services.common.book_checksum import checksum, checksum_text
from services.common.codec import Codec
from services.common.config import Settings
from services.matcher.service import CHECKSUM, MatcherCore, MatcherPartition
from services.matcher.state import BUY, SELL
from tests.unit.reference_book import random_stream

CODEC = Codec()
SETTINGS = Settings(topic_prefix="t.")


def encoded_stream(seed: int, n: int, symbol: str = "X", deep: bool = False) -> list[bytes]:
    """random_stream's commands as match.commands records."""
    out = []
    for i, command in enumerate(random_stream(seed, n, deep)):
        op, ts, oid = command[0], command[1], command[2]
        env = {"command_id": f"c{i}", "key": symbol, "ts": ts, "reply_to": ""}
        if op == "place":
            _, _, _, acct, side, price, qty, tif, exp, post, stp, budget, lot = command
            name = "marketlog.match.PlaceOrder"
            rec = {"account": acct, "order_id": oid, "side": side, "price": price, "qty": qty,
                   "tif": tif, "expire_ts": exp, "post_only": post, "stp": stp, "budget": budget,
                   "lot": lot}  # fmt: skip
        elif op == "cancel":
            name, rec = "marketlog.match.CancelOrder", {"account": "a", "order_id": oid}
        elif op == "reduce":
            name = "marketlog.match.ReduceOrder"
            rec = {"account": "b", "order_id": oid, "qty": command[4]}
        else:
            name = "marketlog.match.ReplaceOrder"
            rec = {"account": "c", "order_id": oid, "new_order_id": command[4],
                   "price": command[5], "qty": command[6]}  # fmt: skip
        out.append(CODEC.encode(name, {"envelope": env, **rec}))
    return out


def test_the_documented_string_and_crc():
    bids, asks = [(1450000, 10000), (1440000, 30000)], [(1465000, 2000)]
    text = checksum_text(bids, asks)
    assert text == "1450000:10000:1465000:2000:1440000:30000"
    assert checksum(bids, asks) == zlib.crc32(text.encode())
    assert checksum([], []) == 0
    assert checksum_text([], [(5, 1), (6, 2)]) == "5:1:6:2"


def test_only_the_top_ten_levels_count():
    bids = [(1000 - i, 1) for i in range(15)]
    asks = [(2000 + i, 1) for i in range(12)]
    assert checksum(bids, asks) == checksum(bids[:10], asks[:10])
    assert checksum(bids, asks) != checksum(bids[:9], asks[:10])


def test_top_levels_equal_the_full_depth_over_a_deep_stream():
    core = MatcherCore(SETTINGS, CODEC).fresh(0, 1)
    for value in encoded_stream(5, 2000, deep=True):
        core.apply(value)
    book = core.matcher.books["X"]
    assert len(book.depth(BUY)) > 10 and len(book.depth(SELL)) > 10
    for side in (BUY, SELL):
        assert book.top(side, 10) == book.depth(side)[:10]
        assert book.top(side, 1000) == book.depth(side)


def checksums(outputs) -> list[dict]:
    return [r for name, r in (CODEC.decode(o.value) for o in outputs) if name == CHECKSUM]


def test_a_checksum_each_time_the_sequence_passes_a_multiple_of_the_interval():
    part = MatcherPartition(CODEC, MatcherCore(SETTINGS, CODEC).topics, every=25)
    seen = []
    for value in encoded_stream(11, 1500):
        before = part.matcher.books.get("X").seq if part.matcher.books else 0
        found = checksums(part.apply(value))
        after = part.matcher.books["X"].seq
        assert len(found) == (before // 25 != after // 25)
        for record in found:
            book = part.matcher.books["X"]
            assert record["seq"] == after and record["depth"] == 10
            assert record["checksum"] == checksum(book.depth(BUY), book.depth(SELL))
            assert record["envelope"]["key"] == "X"
            seen.append(record["seq"])
    assert len(seen) >= 20


def test_checksums_are_the_same_after_a_snapshot_and_restore():
    stream = encoded_stream(3, 1200)
    core = MatcherCore(SETTINGS, CODEC)
    straight = core.fresh(0, 1)
    straight.every = 10
    outputs = [o for v in stream for o in straight.apply(v)]
    first = core.fresh(0, 1)
    first.every = 10
    head = [o for v in stream[:600] for o in first.apply(v)]
    again = core.restore(0, 1, first.snapshot())
    again.every = 10
    tail = [o for v in stream[600:] for o in again.apply(v)]
    assert head + tail == outputs
    assert checksums(outputs)


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MARKETLOG_CHECKSUM_EVERY", "7")
    assert MatcherCore(SETTINGS, CODEC).fresh(0, 1).every == 7
    monkeypatch.delenv("MARKETLOG_CHECKSUM_EVERY")
    assert MatcherCore(SETTINGS, CODEC).fresh(0, 1).every == 100
