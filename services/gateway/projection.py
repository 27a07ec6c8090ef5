"""Reads from the projector's PostgreSQL tables, and waiting for them to catch up.

The projector stores, with its rows, the next offset it will apply of each input partition
(``applied_offsets``) and announces each commit with ``NOTIFY marketlog_applied``. A read that
follows a write waits until the decision's offset of account.events is applied. Only the tables
are shared with the projector, never its code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

CHANNEL = "marketlog_applied"
SCHEMA = "projection"
Row = dict[str, Any]
ARMED_SYMBOLS = "SELECT DISTINCT symbol FROM daytrade_triggers ORDER BY symbol"  # rows = armed


class ProjectionTimeout(TimeoutError):
    """The projection did not reach the offset a read needed in time."""


@dataclass(frozen=True)
class OrderView:
    order: Row
    executions: list[Row]


class Projection:
    def __init__(self, database_url: str, accounts_topic: str, pool_max: int = 10) -> None:
        self.database_url = database_url
        self.accounts_topic = accounts_topic
        self.pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=pool_max,
            open=False,
            # no prepared statements: a projector rebuild swaps the tables underneath
            kwargs={
                "options": f"-c search_path={SCHEMA}",
                "autocommit": True,
                "prepare_threshold": None,
            },
        )
        self.applied: dict[int, int] = {}  # account.events partition -> next offset applied
        self.refreshed = False  # the applied offsets have been read at least once
        self._changed = asyncio.Event()
        self._listener: asyncio.Task | None = None

    async def start(self) -> None:
        await self.pool.open(wait=True, timeout=30)
        self._listener = asyncio.create_task(self._listen(), name="projection-listener")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self.pool.close()

    # -- applied offsets -----------------------------------------------------------------------
    async def _refresh(self) -> None:
        try:
            rows = await self._offsets()
        except psycopg.errors.UndefinedTable:  # the projector has not made its tables yet
            return
        fresh = {r["partition"]: r["next_offset"] for r in rows}
        self.refreshed = True
        if fresh != self.applied:
            self.applied = fresh
            self._changed.set()
            self._changed = asyncio.Event()

    async def _offsets(self) -> list[Row]:
        return await self.rows(
            "SELECT partition, max(next_offset) AS next_offset FROM applied_offsets "
            "WHERE topic = %s GROUP BY partition",
            (self.accounts_topic,),
        )

    async def _listen(self) -> None:
        """Refresh on every NOTIFY, and every half second in case one was missed."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    while True:
                        async for _ in conn.notifies(timeout=0.5, stop_after=1):
                            pass
                        await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database restarted: try again shortly
                log.warning("projection listener: %s", exc)
                await asyncio.sleep(1)

    def reached(self, offsets: Mapping[int, int]) -> bool:
        """Whether every (partition -> offset) given has been applied."""
        return all(self.applied.get(p, 0) > o for p, o in offsets.items())

    async def wait(self, offsets: Mapping[int, int], timeout: float) -> None:
        """Until the projection has applied account.events up to and including ``offsets``."""
        if not offsets or self.reached(offsets):
            return
        try:
            async with asyncio.timeout(timeout):
                while not self.reached(offsets):
                    await self._changed.wait()
        except TimeoutError as exc:
            raise ProjectionTimeout(
                f"the projection did not catch up with your last write within {timeout:g}s"
            ) from exc

    # -- queries -------------------------------------------------------------------------------
    async def rows(self, sql: str, params: tuple = ()) -> list[Row]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def row(self, sql: str, params: tuple = ()) -> Row | None:
        found = await self.rows(sql, params)
        return found[0] if found else None

    async def account_exists(self, account: str) -> bool:
        return bool(await self.row("SELECT 1 FROM accounts WHERE account_id = %s", (account,)))

    async def symbol_exists(self, symbol: str) -> bool:
        return bool(await self.row("SELECT 1 FROM symbols WHERE symbol = %s", (symbol,)))

    async def account_for_key(self, key_hash: str) -> str | None:
        found = await self.row(
            "SELECT account_id FROM accounts WHERE api_key_hash = %s", (key_hash,)
        )
        return None if found is None else found["account_id"]

    async def order(self, account: str, order_id: int) -> OrderView | None:
        order = await self.row(
            "SELECT * FROM orders WHERE order_id = %s AND account_id = %s", (order_id, account)
        )
        if order is None:
            return None
        executions = await self.rows(
            "SELECT seq, price, qty, role, ts FROM executions WHERE order_id = %s ORDER BY seq",
            (order_id,),
        )
        return OrderView(order, executions)

    async def orders(
        self, account: str, status: str | None, symbol: str | None, limit: int, before: int | None
    ) -> list[Row]:
        return await self.rows(
            "SELECT * FROM orders WHERE account_id = %s"
            " AND (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR symbol = %s)"
            " AND (%s::bigint IS NULL OR order_id < %s) ORDER BY order_id DESC LIMIT %s",
            (account, status, status, symbol, symbol, before, before, limit),
        )

    async def executions(self, account: str, symbol: str | None, limit: int) -> list[Row]:
        return await self.rows(
            "SELECT * FROM executions WHERE account_id = %s"
            " AND (%s::text IS NULL OR symbol = %s) ORDER BY ts DESC, seq DESC LIMIT %s",
            (account, symbol, symbol, limit),
        )

    async def balance(self, account: str) -> Row | None:
        return await self.row("SELECT * FROM balances WHERE account_id = %s", (account,))

    async def positions(self, account: str) -> list[Row]:
        return await self.rows(
            "SELECT * FROM positions WHERE account_id = %s ORDER BY symbol", (account,)
        )

    async def book(self, symbol: str, depth: int) -> tuple[int, list[Row]] | None:
        """The L2 levels of a symbol and the sequence they reflect, read in one statement so
        the two agree; None for an unknown symbol."""
        rows = await self.rows(
            "SELECT s.symbol, coalesce(b.seq, 0) AS seq, l.side, l.price, l.qty"
            " FROM symbols s LEFT JOIN books b ON b.symbol = s.symbol"
            " LEFT JOIN book_levels l ON l.symbol = s.symbol WHERE s.symbol = %s",
            (symbol,),
        )
        if not rows:
            return None
        levels = [r for r in rows if r["side"] is not None]
        bids = sorted((r for r in levels if r["side"] == "BUY"), key=lambda r: -r["price"])
        asks = sorted((r for r in levels if r["side"] == "SELL"), key=lambda r: r["price"])
        return rows[0]["seq"], bids[:depth] + asks[:depth]

    async def armed_symbols(self) -> list[str]:
        """Symbols with an armed day-trading trigger (the projector's daytrade_triggers); none
        before the projector has made that table."""
        try:
            rows = await self.rows(ARMED_SYMBOLS)
        except psycopg.errors.UndefinedTable:
            return []
        return [r["symbol"] for r in rows]

    async def trades(self, symbol: str, limit: int) -> list[Row]:
        return await self.rows(
            "SELECT * FROM trades WHERE symbol = %s ORDER BY seq DESC LIMIT %s", (symbol, limit)
        )

    async def candles(self, symbol: str, interval: str, limit: int) -> list[Row]:
        """The newest `limit` candles of the analytics app (docs/analytics.md), newest first."""
        return await self.rows(
            "SELECT * FROM candles WHERE symbol = %s AND interval = %s"
            " ORDER BY start_ms DESC LIMIT %s",
            (symbol, interval, limit),
        )
