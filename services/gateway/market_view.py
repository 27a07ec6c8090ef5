"""The public market stream's view of one book: L2 levels from a snapshot, moved by market.events.
Pure: ``apply`` turns one event into the messages a subscriber gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.money import format_price, format_qty

MARKET = "marketlog.market."
OTHER = {"BUY": "SELL", "SELL": "BUY"}


@dataclass
class BookView:
    symbol: str
    seq: int  # the last event folded in
    levels: dict[tuple[str, int], int] = field(default_factory=dict)  # (side, price) -> qty

    @classmethod
    def from_rows(cls, symbol: str, seq: int, rows: list[dict[str, Any]]) -> BookView:
        return cls(symbol, seq, {(r["side"], r["price"]): r["qty"] for r in rows})

    def snapshot(self) -> dict[str, Any]:
        def side(name: str, best_first: bool) -> list[dict[str, str]]:
            prices = sorted((p for s, p in self.levels if s == name), reverse=best_first)
            return [
                {"price": format_price(p), "qty": format_qty(self.levels[(name, p)])}
                for p in prices
            ]

        return {
            "type": "snapshot",
            "symbol": self.symbol,
            "seq": self.seq,
            "bids": side("BUY", True),
            "asks": side("SELL", False),
        }

    def _move(self, seq: int, side: str, price: int, delta: int) -> dict[str, Any]:
        total = max(0, self.levels.get((side, price), 0) + delta)
        if total:
            self.levels[(side, price)] = total
        else:
            self.levels.pop((side, price), None)
        return {
            "type": "level",
            "symbol": self.symbol,
            "seq": seq,
            "side": side,
            "price": format_price(price),
            "qty": format_qty(total),  # the new total at that price; "0": the level is gone
        }

    def apply(self, name: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Messages for one event; none for one already folded into the view."""
        if name == MARKET + "BookChecksum":  # repeats the seq it reflects: not a book event
            return []
        seq = record["seq"]
        if seq <= self.seq:
            return []
        self.seq = seq
        kind = name.removeprefix(MARKET)
        if kind == "OrderRested":
            return [self._move(seq, record["side"], record["price"], record["qty"])]
        if kind == "Trade":
            maker = OTHER[record["taker_side"]]
            trade = {
                "type": "trade",
                "symbol": self.symbol,
                "seq": seq,
                "price": format_price(record["price"]),
                "qty": format_qty(record["qty"]),
                "taker_side": record["taker_side"],
                "ts": record["envelope"]["ts"],
            }
            return [self._move(seq, maker, record["price"], -record["qty"]), trade]
        if kind == "OrderCancelled" and record.get("rested") and record.get("price") is not None:
            return [self._move(seq, record["side"], record["price"], -record["qty"])]
        if kind == "OrderReduced" and record.get("rested", True):  # not a decremented taker
            return [self._move(seq, record["side"], record["price"], -record["qty"])]
        return []
