"""The analytics core against its naive twin (tests/analytics_reference.py): random trade streams
delivered with duplicates and redeliveries give the candles of the unique trades, update for
update, and the state survives its byte form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.analytics import core
from tests import analytics_reference as ref


def as_dict(u: core.Update) -> dict:
    c = u.candle
    return {
        "seq": u.seq,
        "interval": c.interval,
        "start": c.start,
        "open": c.open,
        "high": c.high,
        "low": c.low,
        "close": c.close,
        "volume": c.volume,
        "notional": c.notional,
        "trades": c.trades,
        "vwap": c.vwap,
        "volume_24h": u.volume_24h,
    }


@st.composite
def trade_streams(draw):
    """Unique gap-free trades, and a delivery order with duplicates and replays of a suffix."""
    n = draw(st.integers(1, 60))
    ts = draw(st.integers(1_700_000_000_000_000, 1_800_000_000_000_000))
    trades = []
    for seq in range(1, n + 1):
        # mostly forward, sometimes a step back (stamps out of order), sometimes hours ahead
        ts += draw(
            st.one_of(
                st.integers(0, 400_000),
                st.integers(-50_000, 0),
                st.integers(0, 90_000_000),
                st.integers(0, 30 * 3_600_000_000),
            )
        )
        price = draw(st.integers(1, 10**7))
        qty = draw(st.integers(1, 10**5))
        trades.append((seq, ts, price, qty))
    delivered, pos = [], 0
    while pos < n:
        action = draw(st.sampled_from(["next", "next", "next", "duplicate", "replay"]))
        if action == "next" or pos == 0:
            pos += 1
            delivered.append(pos)
        elif action == "duplicate":
            delivered.append(draw(st.integers(1, pos)))
        else:
            delivered.extend(range(draw(st.integers(1, pos)), pos + 1))
    return trades, delivered


def run(trades, delivered, *, through_bytes: bool = False):
    head, window, out = None, (), []
    for seq in delivered:
        _, ts, price, qty = trades[seq - 1]
        head, window, updates = core.fold(head, window, core.Trade("ABC", seq, ts, price, qty))
        if through_bytes and head is not None:  # as the shell's tables keep them
            head = core.load_head(core.dump_head(head))
            window = core.load_window(core.dump_window(window))
        out.extend(updates)
    return head, window, out


@settings(max_examples=300, deadline=None)
@given(trade_streams())
def test_updates_equal_the_naive_twin_over_unique_trades(stream):
    trades, delivered = stream
    _, _, out = run(trades, delivered)
    assert [as_dict(u) for u in out] == ref.updates(trades)


@settings(max_examples=150, deadline=None)
@given(trade_streams())
def test_last_update_per_window_is_the_candle_of_its_trades(stream):
    trades, delivered = stream
    _, _, out = run(trades, delivered, through_bytes=True)
    last = {}
    for u in out:
        d = as_dict(u)
        del d["seq"], d["volume_24h"]
        last[(d["interval"], d["start"])] = d
    assert last == ref.candles(trades)


def test_a_seen_seq_changes_nothing():
    head, window, out = core.fold(None, (), core.Trade("X", 5, 1_000_000, 100, 2))
    assert len(out) == 2
    for seq in (1, 5):
        again = core.fold(head, window, core.Trade("X", seq, 9_000_000, 999, 9))
        assert again[0] is head and again[1] is window and again[2] == []


def test_vwap_rounds_half_up_in_price_units():
    assert core.vwap(notional=3 * 100 + 1 * 101, volume=4) == 100  # 100.25
    assert core.vwap(notional=1 * 100 + 1 * 101, volume=2) == 101  # 100.5
    assert core.vwap(notional=1 * 100 + 3 * 101, volume=4) == 101  # 100.75


def test_24h_volume_drops_minutes_older_than_1440():
    minute = 60_000_000
    t0 = 1_700_000_000 * 1_000_000 // minute * minute
    head, window, _ = core.fold(None, (), core.Trade("X", 1, t0, 100, 7))
    head, window, out = core.fold(head, window, core.Trade("X", 2, t0 + 1439 * minute, 100, 1))
    assert out[0].volume_24h == 8
    head, window, out = core.fold(head, window, core.Trade("X", 3, t0 + 1440 * minute, 100, 1))
    assert out[0].volume_24h == 2 and window == ((t0 // 1000 + 1439 * 60_000, 1),)


@settings(max_examples=150, deadline=None)
@given(trade_streams(), st.data())
def test_a_crash_restored_from_the_state_records_counts_each_trade_once(stream, data):
    """What the shell does across a kill -9: the updates and state records of the trades before
    the last commit are kept (newest state record per key, as compaction leaves them), the rest is
    lost, and the input is delivered again from the committed point. Each trade's updates then
    appear once, equal to the naive twin's."""
    trades, delivered = stream
    symbols, committed_updates, state = core.Symbols(), [], {}
    crash = data.draw(st.integers(0, len(delivered)))
    for seq in delivered[:crash]:
        _, ts, price, qty = trades[seq - 1]
        updates, records = symbols.fold(core.Trade("ABC", seq, ts, price, qty))
        committed_updates.extend(updates)
        state.update(records)
    restored = core.Symbols()
    for key, value in state.items():
        restored.restore(key, value)
    replay = data.draw(st.integers(0, crash))  # committed offsets may lag the committed state
    for seq in delivered[replay:]:
        _, ts, price, qty = trades[seq - 1]
        committed_updates.extend(restored.fold(core.Trade("ABC", seq, ts, price, qty))[0])
    assert [as_dict(u) for u in committed_updates] == ref.updates(trades)


def test_symbols_refuse_a_foreign_state_key():
    with pytest.raises(ValueError, match="not an analytics state key"):
        core.Symbols().restore("ABC", b"[]")
