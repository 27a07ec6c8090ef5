"""Replicas of the matcher's books, and their proof of equality. Pure: events in, books out.

- ``L3Book``: every resting order, folded from market.events records (OrderRested, Trade,
  OrderCancelled, OrderReduced), each of which takes the symbol's next ``seq``.
- ``L2Book``: the total at each price, from the public channel's snapshot and ``orderbook``
  messages (the new total at a price).

Both compute the checksum of services/common/book_checksum.py over their top levels and compare it
with the matcher's (a BookChecksum record, or the public channel's ``checksum`` message) when they
reflect the same sequence number: a ``Check``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from heapq import nlargest, nsmallest
from typing import Any

from services.common.book_checksum import DEPTH, checksum

MARKET = "marketlog.market."
BUY, SELL = "BUY", "SELL"
OTHER = {BUY: SELL, SELL: BUY}


class Gap(Exception):
    """The feed jumped past the next sequence number: resynchronise."""

    def __init__(self, symbol: str, have: int, got: int) -> None:
        super().__init__(f"{symbol}: have seq {have}, got {got}")
        self.symbol, self.have, self.got = symbol, have, got


@dataclass(frozen=True)
class Check:
    symbol: str
    seq: int
    matcher: int  # the matcher's checksum at seq
    ours: int  # the replica's at seq

    @property
    def equal(self) -> bool:
        return self.matcher == self.ours


@dataclass
class Levels:
    """Totals per price of both sides; the top of each side for the checksum."""

    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)

    def side(self, side: str) -> dict[int, int]:
        return self.bids if side == BUY else self.asks

    def set(self, side: str, price: int, qty: int) -> None:
        if qty > 0:
            self.side(side)[price] = qty
        else:
            self.side(side).pop(price, None)

    def add(self, side: str, price: int, delta: int) -> None:
        self.set(side, price, self.side(side).get(price, 0) + delta)

    def top(self, side: str, n: int = DEPTH) -> list[tuple[int, int]]:
        levels = self.side(side)
        prices = nlargest(n, levels) if side == BUY else nsmallest(n, levels)
        return [(p, levels[p]) for p in prices]

    def checksum(self) -> int:
        return checksum(self.top(BUY), self.top(SELL))


class L3Book:
    """One symbol's resting orders from market.events."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.seq = 0
        self.orders: dict[int, list] = {}  # order id -> [side, price, qty]
        self.levels = Levels()

    def apply(self, name: str, record: dict[str, Any]) -> Check | None:
        """Fold one record in; a BookChecksum at this book's seq gives a Check. Gap on a jump."""
        kind = name.removeprefix(MARKET)
        seq = record["seq"]
        if kind == "BookChecksum":
            if seq != self.seq:
                return None  # of a moment this book has passed (or a gap, told by the next event)
            return Check(self.symbol, seq, record["checksum"], self.levels.checksum())
        if seq <= self.seq:
            return None
        if seq != self.seq + 1:
            raise Gap(self.symbol, self.seq, seq)
        self.seq = seq
        if kind == "OrderRested":
            self._rest(record["order_id"], record["side"], record["price"], record["qty"])
        elif kind == "Trade":
            self._leave(record["maker_order_id"], record["qty"], record["maker_remaining"])
        elif kind in ("OrderCancelled", "OrderReduced") and record["rested"]:
            left = record.get("remaining", 0)
            self._leave(record["order_id"], record["qty"], left)
        return None

    def _rest(self, oid: int, side: str, price: int, qty: int) -> None:
        self.orders[oid] = [side, price, qty]
        self.levels.add(side, price, qty)

    def _leave(self, oid: int, qty: int, remaining: int) -> None:
        order = self.orders.get(oid)
        if order is None:
            return
        side, price, _ = order
        self.levels.add(side, price, -qty)
        if remaining:
            order[2] = remaining
        else:
            del self.orders[oid]


class L2Book:
    """One symbol's levels from the public channel."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.base = 0  # the snapshot's sequence
        self.seq = 0  # the newest tape sequence heard of
        self.levels = Levels()

    def reset(self, book_seq: int) -> None:
        self.base = self.seq = book_seq
        self.levels = Levels()

    def level(self, side: str, price: int, qty: int, book_seq: int) -> None:
        self.levels.set(side, price, qty)
        self.seq = max(self.seq, book_seq)

    def check(self, book_seq: int, matcher: int) -> Check | None:
        """The channel tells a checksum after every change up to its sequence (some events,
        such as an IOC remainder's cancel, change no level and send nothing): the book reflects
        it unless it predates the snapshot."""
        if book_seq < self.base:
            return None
        self.seq = max(self.seq, book_seq)
        return Check(self.symbol, book_seq, matcher, self.levels.checksum())


@dataclass
class Tally:
    """What a replica has proved about one symbol."""

    checks: int = 0
    mismatches: int = 0
    last: Check | None = None

    def note(self, check: Check) -> None:
        self.checks += 1
        self.mismatches += not check.equal
        self.last = check

    def summary(self, seq: int, ours: int) -> dict[str, Any]:
        last = self.last
        return {
            "seq": seq,
            "checksum": ours,
            "checks": self.checks,
            "mismatches": self.mismatches,
            "last_check": None
            if last is None
            else {"seq": last.seq, "matcher": last.matcher, "ours": last.ours, "equal": last.equal},
        }
