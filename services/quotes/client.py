"""The quote server's client: one connection per quote, as most course clients did."""

from __future__ import annotations

import asyncio
import contextlib

from . import core


async def fetch_quote(
    host: str, port: int, symbol: str, user: str, *, timeout: float = 10.0
) -> core.Quote:
    """Ask the quote server at host:port for symbol's price on behalf of user.

    Raises QuoteError for a symbol or user the server would refuse, an ERROR reply, or a reply
    that is malformed or for another symbol or user; TimeoutError past timeout seconds (the
    delay included); OSError when the server cannot be reached.
    """
    request = core.request_line(symbol, user)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if not line.endswith(b"\n"):
        raise core.QuoteError("the quote server hung up without an answer")
    quote = core.parse_reply(line)
    expected = core.parse_request(request)
    if (quote.symbol, quote.user) != (expected.symbol, expected.user):
        raise core.QuoteError(
            f"quote server answered for {quote.symbol},{quote.user}, "
            f"asked for {expected.symbol},{expected.user}"
        )
    return quote
