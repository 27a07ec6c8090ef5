"""The desk: every operation a surface of the gateway asks of the exchange, in its words.

Handlers (``xml/``, ``http/``, ``channels/``) talk to the desk only; the desk holds the bus (the
log), the directory of known names, the projection (the tables) and the sessions' frontier.

- A write stamps a command (the gateway is the only place that reads a clock for the log: an id
  from ``command_ids`` and the wall clock's microseconds), appends it at once and returns an
  awaitable of its answer: a surface may append several in request order and wait after, as an
  XML ``<transactions>`` does. Awaiting it notes what the answer reflects in the caller's session
  and in the gateway's frontier.
- A read of account data first waits until the projection shows the caller's session and every
  decision any answer of this gateway has reflected (read-your-writes); public reads wait on
  nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from services.common.config import Settings

from . import commands as cmd
from .bus import AppendError, Bus, DecisionTimeout, Event, Heard, Subscriber
from .commands import Command, DayTradeSpec, OrderSpec, QuoteRecord, Stamp
from .config import GatewaySettings
from .directory import Directory
from .market_view import BookView
from .metrics import GatewayMetrics
from .projection import OrderView, Projection, Row
from .quotes import QuoteManager
from .sessions import Session


def command_ids() -> Iterator[str]:
    """Unique command ids, 32 hex digits like a uuid4's: 80 random bits for this process, then a
    counter (uuid4 per command read the OS's random source each time: 3.5 % of the gateway)."""
    prefix = secrets.token_hex(10)
    return (f"{prefix}{n:012x}" for n in itertools.count())


class Desk:
    def __init__(
        self,
        bus: Bus,
        projection: Projection,
        projection_timeout: float,
        *,
        quotes: QuoteManager | None = None,
        dump_dir: Path | None = None,
    ) -> None:
        self._bus = bus
        self._projection = projection
        self.projection_timeout = projection_timeout
        self._directory = Directory(projection, bus, projection_timeout)
        self._bus.watch(Directory.TYPES, self._directory.observe)
        self._command_ids = command_ids()
        self.metrics = GatewayMetrics()
        # every decision that any answer of this gateway has reflected, whoever asked: a read
        # waits for all of it, so no connection reads anything older than an answer it was given
        self.answered = Session()
        # every decision this gateway has heard (answers, ticks' trigger executions, expiries):
        # a DUMPLOG waits until the projection shows all of it
        self.heard = Session()
        self._bus.positions.append(self.heard.note)
        self.quotes = quotes or QuoteManager(Settings().quote_host, Settings().quote_port)
        self.dump_dir = dump_dir if dump_dir is not None else Settings().dump_dir
        # transaction numbers for commands that come without one: unique among this gateway's,
        # and across restarts and instances started at different microseconds (the clock's)
        self._txns = itertools.count(max(1, time.time_ns() // 1000))

    @classmethod
    def from_settings(cls, settings: Settings, gateway: GatewaySettings) -> Desk:
        # the log names this process, so replies reach it and not another gateway instance
        instance_id = f"gateway-{settings.instance}-{secrets.token_hex(4)}"
        bus = Bus(settings, instance_id, gateway.decision_timeout)
        projection = Projection(
            settings.database_url, settings.topic("account.events"), gateway.db_pool_max
        )
        quotes = QuoteManager(
            settings.quote_host, settings.quote_port, settings.quote_cache_ms, gateway.quote_timeout
        )
        return cls(
            bus, projection, gateway.projection_timeout, quotes=quotes, dump_dir=settings.dump_dir
        )

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def instance_id(self) -> str:
        return self._bus.instance_id

    async def start(self) -> None:
        await self._projection.start()
        await self._bus.start()

    async def stop(self) -> None:
        await self._bus.stop()
        await self._projection.stop()

    def waiting_for(self) -> list[str]:
        """What this gateway still waits for before it can answer a write and read it back;
        empty once ready."""
        if not self._bus.started:
            return ["the log: decisions are not heard yet"]
        if not self._projection.refreshed:
            return ["the projection: its applied offsets are not readable yet"]
        starts = self._bus.account_starts
        if not self._projection.reached({p: o - 1 for p, o in starts.items() if o > 0}):
            return ["the projection: it has not applied the log up to this gateway's start"]
        return []

    # -- names ---------------------------------------------------------------------------------
    async def has_account(self, account: str) -> bool:
        return await self._directory.has_account(account)

    async def has_symbol(self, symbol: str) -> bool:
        return await self._directory.has_symbol(symbol)

    async def knows_symbol(self, symbol: str) -> bool:
        """Listed as far as this gateway knows now, waiting for nobody's writes."""
        return await self._directory.knows_symbol(symbol)

    async def account_for_key(self, key_hash: str) -> str | None:
        return await self._directory.account_for_key(key_hash)

    # -- writes: appended when called, answered when awaited -----------------------------------
    def open_account(
        self, account: str, balance: int, session: Session, api_key_hash: str = ""
    ) -> Awaitable[Event]:
        return self._send(cmd.create_account(self.stamp(), account, balance, api_key_hash), session)

    def list_symbol(
        self, symbol: str, tick: int = 1, lot: int = 1, session: Session | None = None
    ) -> Awaitable[Event]:
        return self._send(cmd.create_symbol(self.stamp(), symbol, tick, lot), session)

    def issue_shares(
        self, account: str, symbol: str, qty: int, session: Session
    ) -> Awaitable[Event]:
        return self._send(cmd.issue_shares(self.stamp(), account, symbol, qty), session)

    def deposit(self, account: str, amount: int, session: Session) -> Awaitable[Event]:
        return self._send(cmd.deposit(self.stamp(), account, amount), session)

    def withdraw(self, account: str, amount: int, session: Session) -> Awaitable[Event]:
        return self._send(cmd.withdraw(self.stamp(), account, amount), session)

    def place_order(
        self,
        account: str,
        order: OrderSpec,
        session: Session,
        *,
        matched: bool = False,
        surface: str = "other",
    ) -> Awaitable[Event]:
        """``matched``: answered once the order is matched and every settlement it caused is
        decided (its OrderAccepted, carrying the OrderPlaced and fills), not at acceptance.
        ``surface`` (xml, http, private) labels the gateway's orders counter."""
        self.metrics.order(surface)
        return self._send(cmd.place_order(self.stamp(), account, order), session, matched)

    def cancel_order(self, account: str, order_id: int, session: Session) -> Awaitable[Event]:
        return self._send(cmd.cancel_order(self.stamp(), account, order_id), session)

    def reduce_order(
        self, account: str, order_id: int, qty: int, session: Session
    ) -> Awaitable[Event]:
        return self._send(cmd.reduce_order(self.stamp(), account, order_id, qty), session)

    def replace_order(
        self, account: str, order_id: int, price: int, qty: int, session: Session
    ) -> Awaitable[Event]:
        command = cmd.replace_order(self.stamp(), account, order_id, price, qty)
        return self._send(command, session)

    # -- day trading (docs/daytrading.md) ------------------------------------------------------
    def next_txn(self) -> int:
        """A transaction number for a command that came without one."""
        return next(self._txns)

    def cached_quote(self, symbol: str) -> QuoteRecord | None:
        """The symbol's fresh cached quote (hit false), without waiting; None if there is none."""
        return self.quotes.cached(symbol)

    async def quote(self, symbol: str, user: str) -> QuoteRecord:
        """A quote for a command: cached, or asked of the quote server on ``user``'s behalf
        (hit true). Raises QuoteUnavailable."""
        return await self.quotes.quote(symbol, user)

    def day_trade(
        self, spec: DayTradeSpec, quote: QuoteRecord | None = None, session: Session | None = None
    ) -> Awaitable[Event]:
        """Append a day-trading command (with the quote it uses); answered by its
        DayTradeDecided."""
        return self._send(cmd.day_trade(self.stamp(), spec, quote), session)

    def quote_tick(self, quote: QuoteRecord) -> None:
        """Append a QuoteTick for every ledger partition; nothing awaits it."""
        self._bus.append(cmd.quote_tick(self.stamp(), quote))

    async def armed_symbols(self) -> list[str]:
        """Symbols with an armed trigger, as the projection shows them now."""
        return await self._projection.armed_symbols()

    def check_dump_name(self, filename: str) -> str:
        """The base name a DUMPLOG of ``filename`` writes; ValueError for a refused name (check
        before appending anything)."""
        from .dumplog import safe_name  # the projector's renderer of the audit tables

        return safe_name(filename)

    async def dump_log(
        self,
        decided: Event,
        filename: str,
        session: Session | None = None,
        directory: Path | None = None,
    ) -> tuple[str, Path, int]:
        """Write the audit log of a decided DUMPLOG (its user's, or everyone's for the admin
        form) once the projection shows every decision this gateway has heard, the DUMPLOG's own
        included; the file ends with that DUMPLOG's entry. (name, path, bytes)."""
        from .dumplog import write_dumplog

        offsets = self.heard.merged(self.answered)
        if session is not None:
            offsets = Session(offsets).merged(session)
        await self._projection.wait(offsets, self.projection_timeout)
        folder = directory if directory is not None else self.dump_dir
        user = decided.record["user"] or None
        until = (decided.partition, decided.offset)
        name, path, length = await write_dumplog(
            self._projection.pool, user, folder, filename, until=until
        )
        return name, Path(path), length

    def now(self) -> int:
        """The gateway's clock, microseconds since the epoch."""
        return time.time_ns() // 1000

    def stamp(self) -> Stamp:
        return Stamp(next(self._command_ids), self.now(), self.instance_id)

    def _send(
        self, command: Command, session: Session | None, placed: bool = False
    ) -> Awaitable[Event]:
        future = self._bus.submit(command, placed)  # appended now, in the caller's order
        return self._answer(command, future, session, time.perf_counter())

    async def _answer(
        self, command: Command, future: asyncio.Future, session: Session | None, sent: float
    ) -> Event:
        """The command's answer, noted with every decision it reflects in its session and in
        the gateway's frontier before anyone is given it."""
        try:
            event = await self._bus.decision(command, future)
        except DecisionTimeout:
            self.metrics.reply("timeout", time.perf_counter() - sent)
            raise
        except AppendError:
            self.metrics.reply("append_failed", time.perf_counter() - sent)
            raise
        self.metrics.reply(event.name.rsplit(".", 1)[-1], time.perf_counter() - sent)
        self.answered.note_answer(event)
        if session is not None:
            session.note_answer(event)
        return event

    # -- reads of account data, after the caller's writes -------------------------------------
    async def order(self, account: str, order_id: int, session: Session) -> OrderView | None:
        await self._caught_up(session)
        return await self._projection.order(account, order_id)

    async def orders(
        self,
        account: str,
        session: Session,
        status: str | None,
        symbol: str | None,
        limit: int,
        before: int | None,
    ) -> list[Row]:
        await self._caught_up(session)
        return await self._projection.orders(account, status, symbol, limit, before)

    async def executions(
        self, account: str, session: Session, symbol: str | None, limit: int
    ) -> list[Row]:
        await self._caught_up(session)
        return await self._projection.executions(account, symbol, limit)

    async def balance(self, account: str, session: Session) -> Row | None:
        await self._caught_up(session)
        return await self._projection.balance(account)

    async def positions(self, account: str, session: Session) -> list[Row]:
        await self._caught_up(session)
        return await self._projection.positions(account)

    async def _caught_up(self, session: Session) -> None:
        """Before a read: wait until the projection shows the session's decisions and every
        decision any answer of this gateway has reflected so far."""
        await self._projection.wait(session.merged(self.answered), self.projection_timeout)

    # -- public market data: what the projection shows now ------------------------------------
    async def book(self, symbol: str, depth: int) -> tuple[int, list[Row]] | None:
        return await self._projection.book(symbol, depth)

    async def trades(self, symbol: str, limit: int) -> list[Row]:
        return await self._projection.trades(symbol, limit)

    async def candles(self, symbol: str, interval: str, limit: int) -> list[Row]:
        return await self._projection.candles(symbol, interval, limit)

    async def book_view(self, symbol: str, at_least: int = 0) -> BookView:
        """Every L2 level of a book, once the projection reflects sequence ``at_least`` (or
        the projection timeout has passed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.projection_timeout
        while True:
            found = await self._projection.book(symbol, 1_000_000)
            seq, rows = found if found is not None else (0, [])
            if seq >= at_least or loop.time() > deadline:
                return BookView.from_rows(symbol, seq, rows)
            await asyncio.sleep(0.05)

    # -- what the log says, as it is heard ----------------------------------------------------
    def listen(self, listener: Callable[[Heard], None]) -> None:
        """Where every decision on account.events sits and whom it is about, as it is heard
        (sessions: the decision itself is decoded only for those who need it,
        ``decisions_about``)."""
        self._bus.positions.append(listener)

    @contextlib.contextmanager
    def decisions_about(self, account: str, subscriber: Subscriber) -> Iterator[None]:
        """Every decision about ``account`` goes to ``subscriber`` while inside."""
        with self._subscribed(self._bus.account_subscribers, account, subscriber):
            yield

    @contextlib.contextmanager
    def tape_of(self, symbol: str, subscriber: Subscriber) -> Iterator[None]:
        """Every market.events record of ``symbol`` goes to ``subscriber`` while inside."""
        with self._subscribed(self._bus.market_subscribers, symbol, subscriber):
            yield

    @contextlib.contextmanager
    def _subscribed(
        self, table: dict[str, set[Subscriber]], key: str, subscriber: Subscriber
    ) -> Iterator[None]:
        self._bus.subscribe(table, key, subscriber)
        try:
            yield
        finally:
            self._bus.unsubscribe(table, key, subscriber)
