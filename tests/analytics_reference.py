"""A naive twin of services/analytics/core.py: candles recomputed from a list of unique trades.

No incremental state: every answer is recomputed from the trades themselves, with Fractions for
the VWAP. The unit tests hold the core's folded updates equal to it; the integration test uses it
on the projection's ``trades`` table.
"""

from __future__ import annotations

from fractions import Fraction
from math import floor

WIDTH_MS = {"1s": 1_000, "1m": 60_000}
DAY_MS = 86_400_000


def clocks(trades: list[tuple[int, int, int, int]]) -> list[int]:
    """Each trade's time in ms: its stamp, but never before an earlier trade's (seq order)."""
    out, clock = [], None
    for _seq, ts, _price, _qty in trades:
        clock = ts // 1000 if clock is None else max(clock, ts // 1000)
        out.append(clock)
    return out


def candle(interval: str, start: int, group: list[tuple[int, int]]) -> dict:
    prices = [p for p, _ in group]
    volume = sum(q for _, q in group)
    notional = sum(p * q for p, q in group)
    return {
        "interval": interval,
        "start": start,
        "open": prices[0],
        "high": max(prices),
        "low": min(prices),
        "close": prices[-1],
        "volume": volume,
        "notional": notional,
        "trades": len(group),
        "vwap": floor(Fraction(notional, volume) + Fraction(1, 2)),
    }


def candles(trades: list[tuple[int, int, int, int]]) -> dict[tuple[str, int], dict]:
    """(interval, start) -> the candle of all the trades; trades are (seq, ts µs, price, qty),
    unique and gap-free, in seq order."""
    times = clocks(trades)
    out = {}
    for interval, width in WIDTH_MS.items():
        groups: dict[int, list[tuple[int, int]]] = {}
        for (_seq, _ts, price, qty), t in zip(trades, times, strict=True):
            groups.setdefault(t - t % width, []).append((price, qty))
        for start, group in groups.items():
            out[(interval, start)] = candle(interval, start, group)
    return out


def updates(trades: list[tuple[int, int, int, int]]) -> list[dict]:
    """What the core must emit for each trade in turn: its 1 s then its 1 min candle as they stand
    after it, each with the rolling 24 h volume (the 1,440 minutes ending with the trade's)."""
    times = clocks(trades)
    out = []
    for i, ((seq, _ts, _p, _q), t) in enumerate(zip(trades, times, strict=True)):
        upto = list(zip(trades[: i + 1], times[: i + 1], strict=True))
        minute = t - t % 60_000
        volume_24h = sum(q for (_s, _t, _p, q), tj in upto if tj - tj % 60_000 > minute - DAY_MS)
        for interval, width in WIDTH_MS.items():
            start = t - t % width
            group = [(p, q) for (_s, _t, p, q), tj in upto if tj - tj % width == start]
            out.append({"seq": seq, **candle(interval, start, group), "volume_24h": volume_24h})
    return out
