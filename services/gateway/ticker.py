"""The quote ticker: triggers fire only from quote ticks (docs/daytrading.md, *Triggers*).

Every ``interval`` seconds, for each symbol with an armed trigger (the projection's
``daytrade_triggers``), take a quote through the quote manager (userid ``ticker``: a cache hit
when a command asked for the symbol lately) and append a ``QuoteTick`` to every ledger partition.
Every gateway instance ticks: with several, a symbol gets several ticks per interval (each one a
valid quote; a trigger fires on the first that meets it, and fires once).
"""

from __future__ import annotations

import asyncio
import logging
import time

from .desk import Desk
from .quotes import QuoteUnavailable

log = logging.getLogger(__name__)

TICKER_USER = "ticker"


class Ticker:
    def __init__(self, desk: Desk, interval: float) -> None:
        self.desk = desk
        self.interval = interval
        self.ticks = 0  # QuoteTicks appended
        self.missed = 0  # symbols without a quote at their tick
        self._task: asyncio.Task | None = None
        self._complained = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="quote-ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.interval
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or the log is away: try at the next tick
                self._complain(f"quote ticker: {exc}")
            now = loop.time()
            if due < now:  # a slow tick: skip the missed ones rather than bunch them up
                due = now
            await asyncio.sleep(due - now)

    async def tick(self) -> int:
        """One tick: a QuoteTick for every symbol with an armed trigger; how many."""
        symbols = await self.desk.armed_symbols()
        quotes = await asyncio.gather(
            *(self.desk.quote(symbol, TICKER_USER) for symbol in symbols), return_exceptions=True
        )
        sent = 0
        for symbol, quote in zip(symbols, quotes, strict=True):
            if isinstance(quote, QuoteUnavailable):
                self.missed += 1
                self._complain(f"quote ticker: no quote for {symbol}: {quote}")
                continue
            if isinstance(quote, BaseException):
                raise quote
            self.desk.quote_tick(quote)
            sent += 1
        self.ticks += sent
        return sent

    def _complain(self, message: str) -> None:
        now = time.monotonic()
        if now - self._complained > 10:  # at most one warning every 10 s
            self._complained = now
            log.warning(message)
