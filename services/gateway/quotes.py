"""The quote manager: quotes from the legacy quote server (services/quotes), cached per symbol.

A command that needs a price (QUOTE, BUY, SELL) and the ticker ask here. A fresh quote of the
symbol (younger than ``cache_ms``, by this process's monotonic clock) is reused as it is, with
``hit`` false; otherwise the server is asked (one request per symbol at a time: whoever asks
while it is on its way shares its answer, as a cache hit) and the quote comes back with ``hit``
true for the one command that caused it. Either way the quote travels inside the command record,
so the ledger and every replay use exactly that quote and nobody asks the server again.

No quote (server down, a timeout, an error reply) raises ``QuoteUnavailable``: the command is
answered ``quote_unavailable`` and nothing is appended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from services.quotes import QuoteError, fetch_quote

from .commands import CENT_PRICE, QuoteRecord

Fetch = Callable[..., Awaitable[object]]


class QuoteUnavailable(Exception):
    """No quote could be had; the message says why (for the client)."""


class QuoteManager:
    def __init__(
        self,
        host: str,
        port: int,
        cache_ms: int = 60_000,
        timeout: float = 5.0,
        *,
        fetch: Fetch = fetch_quote,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.port = host, port
        self.cache_s = cache_ms / 1000
        self.timeout = timeout
        self._fetch = fetch
        self._clock = clock
        self._cache: dict[str, tuple[float, QuoteRecord]] = {}  # symbol -> (fetched at, quote)
        self._asking: dict[str, asyncio.Future[QuoteRecord]] = {}
        self.hits = 0  # quotes the server gave
        self.reused = 0  # quotes served from the cache (or shared with a request on its way)
        self.failures = 0

    def cached(self, symbol: str) -> QuoteRecord | None:
        """The symbol's fresh quote (hit false), or None: no waiting."""
        entry = self._cache.get(symbol)
        if entry is None or self._clock() - entry[0] >= self.cache_s:
            return None
        self.reused += 1
        return entry[1]

    async def quote(self, symbol: str, user: str) -> QuoteRecord:
        """A quote of ``symbol``: the cached one, or the server's answer asked for ``user``."""
        found = self.cached(symbol)
        if found is not None:
            return found
        asking = self._asking.get(symbol)
        if asking is not None:  # someone's request is on its way: share its answer
            quote = await asyncio.shield(asking)
            self.reused += 1
            return replace(quote, hit=False)
        future: asyncio.Future[QuoteRecord] = asyncio.get_running_loop().create_future()
        self._asking[symbol] = future
        try:
            quote = await self._ask(symbol, user)
        except BaseException as exc:
            if isinstance(exc, QuoteUnavailable):
                future.set_exception(exc)
                future.exception()  # retrieved: nobody else may be waiting
            else:  # cancelled: whoever shares it asks again
                future.cancel()
            raise
        finally:
            self._asking.pop(symbol, None)
        self._cache[symbol] = (self._clock(), replace(quote, hit=False))
        future.set_result(quote)
        return quote

    async def _ask(self, symbol: str, user: str) -> QuoteRecord:
        try:
            got = await self._fetch(self.host, self.port, symbol, user, timeout=self.timeout)
        except TimeoutError:
            self.failures += 1
            raise QuoteUnavailable(
                f"quote server did not answer within {self.timeout:g} s"
            ) from None
        except QuoteError as exc:
            self.failures += 1
            raise QuoteUnavailable(str(exc)) from None
        except OSError as exc:
            self.failures += 1
            raise QuoteUnavailable(f"quote server unreachable: {exc.strerror or exc}") from None
        self.hits += 1
        return QuoteRecord(
            price=got.price_cents * CENT_PRICE,
            symbol=got.symbol,
            user=got.user,
            quote_server_time=got.timestamp_ms,
            cryptokey=got.cryptokey,
            hit=True,
        )

    @property
    def hit_rate(self) -> float:
        """Share of quotes served without asking the server."""
        total = self.hits + self.reused
        return self.reused / total if total else 0.0
