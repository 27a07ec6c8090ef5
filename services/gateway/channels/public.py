"""The public channel (TCP 7002, docs/channels.md): order book levels and trades, one JSON object
per line, for every subscribed symbol (the default symbol from the start).

Every message carries ``seq``, this connection's message number (1, 2, 3, … with no gap), so a
client that misses one knows; a heartbeat repeats the last number. A subscription starts with a
``snapshot`` header announcing that many ``orderbook`` messages: the whole book at ``bookSeq`` (the
symbol's tape sequence), then deltas (``orderbook``: the new total at a price, 0 = gone; ``trade``)
and the matcher's ``checksum`` of the top levels at a ``bookSeq``. Subscribing again to a symbol
sends a fresh snapshot (how a client resynchronises).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..bus import Event
from ..config import ChannelSettings
from ..desk import Desk
from . import wire
from .public_feed import SymbolFeed, TapeGap
from .wire_lines import LineConnection, LineServer

log = logging.getLogger(__name__)
QUEUE = 100_000  # tape events buffered for one slow subscriber before it is dropped


class PublicServer(LineServer):
    def __init__(self, desk: Desk, settings: ChannelSettings) -> None:
        super().__init__(settings, settings.public_port, "public")
        self.desk = desk

    def connection(self, reader, writer) -> PublicConnection:
        return PublicConnection(self, reader, writer)


class PublicConnection(LineConnection):
    def __init__(self, server: PublicServer, reader, writer) -> None:
        super().__init__(server.settings, reader, writer)
        self.desk = server.desk
        self.seq = 0  # the last message number sent
        self.feeds: dict[str, SymbolFeed] = {}
        self.tapes: dict[str, contextlib.ExitStack] = {}
        # tape events and the connection's own requests, handled in order by one task
        self.queue: asyncio.Queue[Event | tuple[str, str]] = asyncio.Queue()
        self.overflow = False
        self._pump: asyncio.Task | None = None

    async def run(self) -> None:
        self.queue.put_nowait(("subscribe", self.settings.default_symbol))
        self._pump = asyncio.ensure_future(self._pumping())
        try:
            await super().run()
        finally:
            self._pump.cancel()

    async def handle(self, line: bytes) -> None:
        try:
            request = wire.parse_public(line, self.settings.default_symbol)
        except wire.WireError as exc:
            self.send(wire.error(exc.message))
            return
        if isinstance(request, wire.Heartbeat):
            self.send(wire.render({"type": "heartbeat", "seq": self.seq}))
        elif not await self.desk.knows_symbol(request.symbol):
            self.send(wire.error(f"unknown symbol {request.symbol}"))
        elif isinstance(request, wire.Subscribe):
            self.queue.put_nowait(("subscribe", request.symbol))
        else:
            self.queue.put_nowait(("unsubscribe", request.symbol))

    # -- the tape ----------------------------------------------------------------------------
    def _heard(self, event: Event) -> None:
        if self.queue.qsize() >= QUEUE:
            self.overflow = True
            return
        self.queue.put_nowait(event)

    async def _pumping(self) -> None:
        try:
            while not self.closed:
                if self.overflow:
                    self.send(wire.error("subscriber too slow; reconnect for a fresh snapshot"))
                    self.writer.transport.abort()
                    return
                try:
                    async with asyncio.timeout(self.settings.heartbeat):
                        item = await self.queue.get()
                except TimeoutError:
                    self.send(wire.render({"type": "heartbeat", "seq": self.seq}))
                    continue
                await self._take(item)
                while not self.queue.empty() and not self.overflow:
                    await self._take(self.queue.get_nowait())
                for feed in self.feeds.values():
                    self._tell(feed.flush())
                await self.drain()
        except Exception:
            log.exception("public channel feed failed")
            self.writer.transport.abort()

    async def _take(self, item: Event | tuple[str, str]) -> None:
        if isinstance(item, tuple):
            action, symbol = item
            if action == "subscribe":
                await self._subscribe(symbol)
            else:
                self._unsubscribe(symbol)
            return
        feed = self.feeds.get(item.key)
        if feed is None:
            return
        try:
            self._tell(feed.apply(item.name, item.record))
        except TapeGap as gap:  # the snapshot was older than the tape: a newer one first
            feed = await self._snapshot(item.key, gap.seq - 1)
            with contextlib.suppress(TapeGap):  # the projection is late: the next event retries
                self._tell(feed.apply(item.name, item.record))

    async def _subscribe(self, symbol: str) -> None:
        if symbol not in self.tapes:
            stack = contextlib.ExitStack()
            stack.enter_context(self.desk.tape_of(symbol, self._heard))  # before the snapshot
            self.tapes[symbol] = stack
        old = self.feeds.get(symbol)
        await self._snapshot(symbol, old.book_seq if old is not None else 0)

    async def _snapshot(self, symbol: str, at_least: int) -> SymbolFeed:
        view = await self.desk.book_view(symbol, at_least)
        feed = self.feeds[symbol] = SymbolFeed(symbol, view.seq, view.levels)
        self._tell(feed.snapshot())
        return feed

    def _unsubscribe(self, symbol: str) -> None:
        stack = self.tapes.pop(symbol, None)
        if stack is not None:
            stack.close()
        self.feeds.pop(symbol, None)

    def _tell(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.seq += 1
            message["seq"] = self.seq
            self.send(wire.render(message))

    async def close(self) -> None:
        await super().close()
        for stack in self.tapes.values():
            stack.close()
        self.tapes.clear()
