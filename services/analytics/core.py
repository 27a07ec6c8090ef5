"""The analytics core: Trade events of one symbol -> candle updates, VWAP and rolling 24 h volume.

Pure (stdlib only, no clock, no I/O). ``fold(head, window, trade)`` is the whole rule:

- **Exactly once by sequence.** A symbol's Trades carry its gap-free ``seq``; a trade at or below
  the last seq folded for its symbol changes nothing (a redelivered event cannot count twice).
- **Time from the record.** A trade's time is its envelope's ``ts`` (µs, stamped by the gateway),
  but never earlier than the symbol's clock: commands from different partitions can reach the
  matcher a few ms out of stamp order, and a closed candle never reopens. So the clock is the
  largest record time seen so far for the symbol (``Head.clock``, in ms).
- **Candles**: 1 s and 1 min windows aligned to the epoch; open/high/low/close in price units,
  volume in quantity units, notional (sum of price x qty) as an exact integer in cash units,
  number of trades. VWAP = notional / volume in price units, rounded half up (``vwap``).
- **Rolling 24 h volume** at a trade in minute m: the volume of every trade in the 1,440 one-minute
  windows m - 1439 .. m, up to and including this trade. The current minute's volume is in its
  candle; the closed minutes of the last 24 h are the ``Window``, which changes only when a minute
  closes (so the shell rewrites it once a minute, not once a trade).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

SECOND_MS = 1_000
MINUTE_MS = 60_000
DAY_MINUTES = 1_440
INTERVALS = {"1s": SECOND_MS, "1m": MINUTE_MS}


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    seq: int
    ts: int  # µs since the epoch, the envelope's stamp
    price: int  # price units
    qty: int  # quantity units


@dataclass(frozen=True, slots=True)
class Candle:
    interval: str  # "1s" or "1m"
    start: int  # ms since the epoch, a multiple of the interval
    open: int
    high: int
    low: int
    close: int
    volume: int  # quantity units
    notional: int  # cash units: sum of price x qty, exact
    trades: int

    @classmethod
    def first(cls, interval: str, start: int, price: int, qty: int) -> Candle:
        return cls(interval, start, price, price, price, price, qty, price * qty, 1)

    def add(self, price: int, qty: int) -> Candle:
        return replace(
            self,
            high=max(self.high, price),
            low=min(self.low, price),
            close=price,
            volume=self.volume + qty,
            notional=self.notional + price * qty,
            trades=self.trades + 1,
        )

    @property
    def vwap(self) -> int:
        return vwap(self.notional, self.volume)


def vwap(notional: int, volume: int) -> int:
    """notional / volume in price units, rounded half up (integers only)."""
    return (2 * notional + volume) // (2 * volume)


@dataclass(frozen=True, slots=True)
class Head:
    """A symbol's state that changes with every trade."""

    seq: int  # the last trade folded
    clock: int  # ms: the largest record time seen
    second: Candle
    minute: Candle
    closed_volume: int  # the Window's total


# closed minutes of the last 24 h with their volume: ((start ms, volume), ...), oldest first
Window = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Update:
    """One candle as it stands after a trade: what goes on analytics.candles."""

    symbol: str
    seq: int
    ts: int  # µs: the trade's record time
    candle: Candle
    volume_24h: int  # quantity units


def fold(head: Head | None, window: Window, trade: Trade) -> tuple[Head | None, Window, list]:
    """(head, window, updates) after one trade; the very same head and window if it was seen."""
    if head is not None and trade.seq <= head.seq:
        return head, window, []
    clock = trade.ts // 1000 if head is None else max(head.clock, trade.ts // 1000)
    second_start, minute_start = clock - clock % SECOND_MS, clock - clock % MINUTE_MS
    price, qty = trade.price, trade.qty
    if head is not None and head.second.start == second_start:
        second = head.second.add(price, qty)
    else:
        second = Candle.first("1s", second_start, price, qty)
    closed = 0 if head is None else head.closed_volume
    if head is not None and head.minute.start == minute_start:
        minute = head.minute.add(price, qty)
    else:
        minute = Candle.first("1m", minute_start, price, qty)
        if head is not None:
            window = _roll(window, head.minute, minute_start)
            closed = sum(volume for _, volume in window)
    new = Head(trade.seq, clock, second, minute, closed)
    volume_24h = closed + minute.volume
    updates = [
        Update(trade.symbol, trade.seq, trade.ts, second, volume_24h),
        Update(trade.symbol, trade.seq, trade.ts, minute, volume_24h),
    ]
    return new, window, updates


def _roll(window: Window, closing: Candle, minute_start: int) -> Window:
    """The window once `closing` is closed and the clock is in the minute at minute_start."""
    oldest = minute_start - (DAY_MINUTES - 1) * MINUTE_MS
    kept = (*window, (closing.start, closing.volume))
    return tuple(entry for entry in kept if entry[0] >= oldest)


# -- a partition's state and its records on the state topic ------------------------------------
HEAD, WINDOW = "head:", "window:"  # state record keys: the prefix + the symbol


class Symbols:
    """Every symbol's head and window for one input partition.

    ``fold`` returns a trade's updates and the state records that make it durable (the head, and
    the window when a minute closed); ``restore`` takes those records back, newest last, so a
    state rebuilt from the newest record of each key is the state that wrote them.
    """

    def __init__(self) -> None:
        self.heads: dict[str, Head] = {}
        self.windows: dict[str, Window] = {}

    def fold(self, trade: Trade) -> tuple[list[Update], list[tuple[str, bytes]]]:
        symbol = trade.symbol
        window = self.windows.get(symbol, ())
        head, new_window, updates = fold(self.heads.get(symbol), window, trade)
        if not updates:
            return [], []
        self.heads[symbol] = head
        records = [(HEAD + symbol, dump_head(head))]
        if new_window is not window:
            self.windows[symbol] = new_window
            records.append((WINDOW + symbol, dump_window(new_window)))
        return updates, records

    def restore(self, key: str, value: bytes) -> None:
        if key.startswith(HEAD):
            self.heads[key[len(HEAD) :]] = load_head(value)
        elif key.startswith(WINDOW):
            self.windows[key[len(WINDOW) :]] = load_window(value)
        else:
            raise ValueError(f"not an analytics state key: {key!r}")


# -- the state as bytes, for the state topic (compact JSON: ints stay exact) --------------------
def _candle_list(c: Candle) -> list:
    return [c.interval, c.start, c.open, c.high, c.low, c.close, c.volume, c.notional, c.trades]


def dump_head(head: Head) -> bytes:
    fields = [head.seq, head.clock, _candle_list(head.second), _candle_list(head.minute)]
    return json.dumps([*fields, head.closed_volume], separators=(",", ":")).encode()


def load_head(data: bytes) -> Head:
    seq, clock, second, minute, closed = json.loads(data)
    return Head(seq, clock, Candle(*second), Candle(*minute), closed)


def dump_window(window: Window) -> bytes:
    return json.dumps(window, separators=(",", ":")).encode()


def load_window(data: bytes | None) -> Window:
    return () if not data else tuple((start, volume) for start, volume in json.loads(data))
