"""An L2 replica of books from the public channel (TCP 7002): a snapshot at a sequence, then
deltas. Every message carries the connection's message number ``seq``; a jump (a lost message)
makes the replica ask for a fresh snapshot of each symbol (``subscribe`` again) and ignore the
deltas until it arrives."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from services.common.json_lines import JsonLines
from services.common.money import PRICE_SCALE, QTY_SCALE

from .book import L2Book, Tally

SIDES = {"bid": "BUY", "ask": "SELL"}


def units(value: int | Decimal, scale: int) -> int:
    """A number of the channel in exchange units (exact, or ValueError)."""
    scaled = Decimal(str(value)) * scale
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} is finer than 1/{scale}")
    return int(scaled)


class L2Replica:
    def __init__(self, host: str, port: int, symbols: list[str], lose: int = 0) -> None:
        self.host, self.port = host, port
        self.symbols = symbols  # besides the channel's default symbol, subscribed at connect
        self.books: dict[str, L2Book] = {}
        self.tallies: dict[str, Tally] = {}
        self.loading: dict[str, int] = {}  # symbol -> snapshot levels still to come
        self.stale: set[str] = set()  # waiting for a fresh snapshot after a gap
        self.seq = 0
        self.messages = self.gaps = self.resyncs = 0
        self._lose = lose  # fault injection for tests: drop the lose-th message once
        self.lines: JsonLines | None = None

    async def run(self, duration: float | None = None, idle: float | None = None) -> None:
        self.lines = await JsonLines.connect(self.host, self.port)
        for symbol in self.symbols:
            self.lines.send({"message": "subscribe", "symbol": symbol})
        loop = asyncio.get_running_loop()
        began = heard = loop.time()
        try:
            while True:
                now = loop.time()
                wait = [w for w in (duration and began + duration - now, idle) if w is not None]
                try:
                    async with asyncio.timeout(min(wait) if wait else None):
                        message = await self.lines.recv()
                except TimeoutError:
                    message = {"type": "heartbeat", "seq": self.seq}
                if message is None:
                    return
                if message.get("type") != "heartbeat":
                    heard = loop.time()
                self.take(message)
                now = loop.time()
                if duration is not None and now - began >= duration:
                    return
                if idle is not None and now - heard >= idle:
                    return
        finally:
            await self.lines.close()

    def take(self, message: dict[str, Any]) -> None:
        """One message of the channel, in order."""
        seq = message.get("seq")
        if seq is None:
            return  # an error or an answer: not part of the feed
        if message.get("type") != "heartbeat":
            self.messages += 1
            if self.messages == self._lose:
                return  # lost on purpose
        if message["type"] == "heartbeat":
            if seq > self.seq:
                self._gap()
            return
        if seq != self.seq + 1:
            self._gap()
        self.seq = seq
        handler = getattr(self, "_" + message["type"], None)
        if handler is not None:
            handler(message)

    def _gap(self) -> None:
        self.gaps += 1
        self.resyncs += 1
        self.stale = set(self.books)
        assert self.lines is not None
        for symbol in self.books:
            self.lines.send({"message": "subscribe", "symbol": symbol})

    def _snapshot(self, m: dict[str, Any]) -> None:
        symbol = m["symbol"]
        book = self.books.setdefault(symbol, L2Book(symbol))
        self.tallies.setdefault(symbol, Tally())
        book.reset(m["bookSeq"])
        self.loading[symbol] = m["levels"]
        self.stale.discard(symbol)

    def _orderbook(self, m: dict[str, Any]) -> None:
        symbol = m["symbol"]
        book = self.books.get(symbol)
        if book is None or symbol in self.stale:
            return
        if self.loading.get(symbol):
            self.loading[symbol] -= 1
        price, qty = units(m["price"], PRICE_SCALE), units(m["quantity"], QTY_SCALE)
        book.level(SIDES[m["side"]], price, qty, m["bookSeq"])

    def _trade(self, m: dict[str, Any]) -> None:
        book = self.books.get(m["symbol"])
        if book is not None and m["symbol"] not in self.stale:
            book.seq = max(book.seq, m["bookSeq"])

    def _checksum(self, m: dict[str, Any]) -> None:
        symbol = m["symbol"]
        book = self.books.get(symbol)
        if book is None or symbol in self.stale or self.loading.get(symbol):
            return
        check = book.check(m["bookSeq"], m["checksum"])
        if check is not None:
            self.tallies[symbol].note(check)

    def summary(self) -> dict[str, Any]:
        return {
            "replica": "L2",
            "source": f"{self.host}:{self.port}",
            "messages": self.messages,
            "gaps": self.gaps,
            "resyncs": self.resyncs,
            "books": {
                s: self.tallies[s].summary(b.seq, b.levels.checksum())
                for s, b in sorted(self.books.items())
            },
        }
