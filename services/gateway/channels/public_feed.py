"""One symbol's public feed: L2 levels from a snapshot, moved by market.events, as the public
channel's messages (docs/channels.md). Pure.

A trade is told at once; the level changes of one command (a taker sweeping several levels, its
remainder resting) are told together once the command's events are over — when an event of
another command or a checksum arrives, or when the shell has nothing more queued (``flush``) — so
the starter kit's SELL 350@144 reads: three trades, then ``bid 145 → 0``, ``bid 144 → 250``.
"""

from __future__ import annotations

from typing import Any

from . import wire

MARKET = "marketlog.market."
OTHER = {"BUY": "SELL", "SELL": "BUY"}
CHECKSUM = MARKET + "BookChecksum"


class TapeGap(Exception):
    """The tape jumped past the next sequence number: the view must start from a new snapshot."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"tape gap before seq {seq}")
        self.seq = seq


class SymbolFeed:
    def __init__(self, symbol: str, book_seq: int, levels: dict[tuple[str, int], int]) -> None:
        self.symbol = symbol
        self.book_seq = book_seq  # the last event folded in
        self.levels = dict(levels)  # (side, price) -> qty
        self._pending: dict[tuple[str, int], int] = {}  # changed levels -> seq of last change
        self._command = ""

    def snapshot(self) -> list[dict[str, Any]]:
        """The header, then every level: bids best first, then asks best first."""
        bids = sorted((p for s, p in self.levels if s == "BUY"), reverse=True)
        asks = sorted(p for s, p in self.levels if s == "SELL")
        levels = [("BUY", p) for p in bids] + [("SELL", p) for p in asks]
        return [wire.snapshot(self.symbol, self.book_seq, len(levels))] + [
            wire.orderbook(self.symbol, s, p, self.levels[(s, p)], self.book_seq) for s, p in levels
        ]

    def apply(self, name: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages one market.events record makes ready now (TapeGap on a jump)."""
        if name == CHECKSUM:
            if record["seq"] != self.book_seq:  # not this view's moment (older, or a gap)
                return []
            crc = wire.book_checksum(
                self.symbol, record["seq"], record["depth"], record["checksum"]
            )
            return [*self.flush(), crc]
        seq = record["seq"]
        if seq <= self.book_seq:
            return []
        if seq > self.book_seq + 1:
            raise TapeGap(seq)
        command = record["envelope"]["command_id"]
        out = self.flush() if command != self._command else []
        self._command = command
        self.book_seq = seq
        kind = name.removeprefix(MARKET)
        if kind == "OrderRested":
            self._move(record["side"], record["price"], record["qty"], seq)
        elif kind == "Trade":
            self._move(OTHER[record["taker_side"]], record["price"], -record["qty"], seq)
            ts = record["envelope"]["ts"]
            out.append(wire.trade(self.symbol, ts, record["price"], record["qty"], seq))
        elif kind == "OrderCancelled":
            if record["rested"] and record["price"] is not None:
                self._move(record["side"], record["price"], -record["qty"], seq)
        elif kind == "OrderReduced" and record["rested"]:  # not a decremented taker
            self._move(record["side"], record["price"], -record["qty"], seq)
        return out

    def flush(self) -> list[dict[str, Any]]:
        """The level changes not yet told, in the order they were first changed."""
        out = [
            wire.orderbook(self.symbol, s, p, self.levels.get((s, p), 0), seq)
            for (s, p), seq in self._pending.items()
        ]
        self._pending.clear()
        return out

    def _move(self, side: str, price: int, delta: int, seq: int) -> None:
        total = max(0, self.levels.get((side, price), 0) + delta)
        if total:
            self.levels[(side, price)] = total
        else:
            self.levels.pop((side, price), None)
        self._pending[(side, price)] = seq
