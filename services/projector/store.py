"""Writes one folded batch and its offsets in one PostgreSQL transaction, set-based.

Append-only tables (audit_log, executions, trades, new orders, accounts) are written with COPY:
the applied offsets make each record's rows arrive exactly once, so the primary keys only ever
catch bugs. Tables updated in place get one ``unnest`` statement each (binary parameters), with
the batch already folded to one row per key.

Fencing: the transaction first locks the batch's rows of ``applied_offsets`` and checks they still
hold the offsets this writer started from. If another writer (a newer instance after a rebalance, a
rebuild's swap) moved them, nothing is written and the caller re-seeks to the stored offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg

from .rows import Batch
from .schema import CHANNEL

log = logging.getLogger(__name__)

ORDER_COLUMNS = (
    "order_id, account_id, client_order_id, symbol, side, price, qty, tif, expire_ts, post_only,"
    " stp, budget, replaces, open_qty, executed_qty, executed_notional, cancelled_qty,"
    " cancelled_ts, reduced_qty, close_reason, hold, updated_ts, created_ts, command_id"
)
COPIES = {
    "audit_log": (
        "src_partition, src_offset, ts, command_id, command, event, kind, account_id, symbol,"
        " order_id, side, price, qty, funds, action, message"
    ),
    "executions": "order_id, seq, symbol, account_id, side, price, qty, role, ts, command_id",
    "trades": "symbol, seq, price, qty, maker_order_id, taker_order_id, taker_side, ts, command_id",
    "orders": ORDER_COLUMNS,
    "accounts": "account_id, initial_balance, created_ts, command_id, api_key_hash",
}

UPDATE_ORDERS = """
UPDATE orders o SET
    open_qty = d.open_qty,
    executed_qty = o.executed_qty + d.exec_qty,
    executed_notional = o.executed_notional + d.exec_notional,
    cancelled_qty = o.cancelled_qty + d.cancelled_qty,
    cancelled_ts = COALESCE(d.cancelled_ts, o.cancelled_ts),
    reduced_qty = o.reduced_qty + d.reduced_qty,
    close_reason = COALESCE(d.close_reason, o.close_reason),
    -- rows.consumed_hold, in SQL: what the fills took; an order no longer open holds nothing
    hold = CASE WHEN d.open_qty = 0 THEN 0 ELSE o.hold - d.released - CASE
        WHEN o.side = 'SELL' THEN d.exec_qty
        WHEN o.price IS NULL THEN d.exec_notional
        ELSE o.price * d.exec_qty END END,
    updated_ts = d.ts
FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[],
            %b::bigint[], %b::bigint[], %b::text[], %b::bigint[], %b::bigint[])
    AS d(order_id, open_qty, exec_qty, exec_notional, cancelled_qty, cancelled_ts,
         reduced_qty, close_reason, released, ts)
WHERE o.order_id = d.order_id
RETURNING o.order_id
"""

MERGE_BALANCES = """
MERGE INTO balances b
USING unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[])
    AS d(account_id, available, held, deposited, withdrawn, ts)
ON b.account_id = d.account_id
WHEN MATCHED THEN UPDATE SET available = d.available, held = COALESCE(d.held, b.held),
    deposited = b.deposited + d.deposited, withdrawn = b.withdrawn + d.withdrawn,
    updated_ts = d.ts
WHEN NOT MATCHED THEN INSERT VALUES
    (d.account_id, d.available, COALESCE(d.held, 0), d.deposited, d.withdrawn, d.ts)
"""

MERGE_POSITIONS = """
MERGE INTO positions p
USING unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[])
    AS d(account_id, symbol, available, held, issued, ts)
ON p.account_id = d.account_id AND p.symbol = d.symbol
WHEN MATCHED THEN UPDATE SET available = d.available, held = COALESCE(d.held, p.held),
    issued = p.issued + d.issued, updated_ts = d.ts
WHEN NOT MATCHED THEN INSERT VALUES
    (d.account_id, d.symbol, d.available, COALESCE(d.held, 0), d.issued, d.ts)
"""

INSERT_SYMBOLS = """
INSERT INTO symbols SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[],
    %b::text[]) ON CONFLICT (symbol) DO NOTHING
"""

UPSERT_LEVELS = """
INSERT INTO book_levels AS l
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::bigint[])
ON CONFLICT (symbol, side, price) DO UPDATE SET qty = l.qty + excluded.qty, seq = excluded.seq
RETURNING symbol, side, price, qty
"""

DELETE_LEVELS = """
DELETE FROM book_levels l USING unnest(%b::text[], %b::text[], %b::bigint[]) AS d(symbol, side,
    price) WHERE l.symbol = d.symbol AND l.side = d.side AND l.price = d.price AND l.qty = 0
"""

BOOK_GAPS = """
SELECT b.symbol, b.seq, d.first FROM books b
JOIN unnest(%b::text[], %b::bigint[]) AS d(symbol, first) ON b.symbol = d.symbol
WHERE d.first <> b.seq + 1
"""

UPSERT_BOOKS = """
INSERT INTO books AS b SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[])
ON CONFLICT (symbol) DO UPDATE SET seq = excluded.seq, ts = excluded.ts
"""

UPSERT_STATS = """
INSERT INTO market_stats AS s SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[],
    %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[],
    %b::bigint[])
ON CONFLICT (symbol) DO UPDATE SET trades = s.trades + excluded.trades,
    volume = s.volume + excluded.volume, notional = s.notional + excluded.notional,
    high = GREATEST(s.high, excluded.high), low = LEAST(s.low, excluded.low),
    last_price = excluded.last_price, last_qty = excluded.last_qty,
    last_seq = excluded.last_seq, last_ts = excluded.last_ts
"""

LOCK_OFFSETS = """
SELECT o.topic, o.partition, o.next_offset FROM applied_offsets o
JOIN unnest(%b::text[], %b::int[]) AS d(topic, partition)
    ON o.topic = d.topic AND o.partition = d.partition
WHERE o.consumer_group = %b
ORDER BY o.topic, o.partition
FOR UPDATE OF o
"""

ENSURE_OFFSETS = """
INSERT INTO applied_offsets SELECT %b, d.topic, d.partition, 0
FROM unnest(%b::text[], %b::int[]) AS d(topic, partition)
ON CONFLICT DO NOTHING
"""

SET_OFFSETS = """
UPDATE applied_offsets o SET next_offset = d.next_offset
FROM unnest(%b::text[], %b::int[], %b::bigint[]) AS d(topic, partition, next_offset)
WHERE o.consumer_group = %b AND o.topic = d.topic AND o.partition = d.partition
"""


@dataclass(frozen=True)
class Span:
    """The records of one partition in a batch: offsets [start, next) as this writer saw them."""

    topic: str
    partition: int
    start: int
    next: int


def columns(rows: Sequence[tuple]) -> list[list]:
    """Row tuples -> one list per column (the unnest parameters)."""
    return [list(c) for c in zip(*rows, strict=True)]


def stored_offsets(
    conn: psycopg.Connection, group: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The next offset to apply per (topic, partition); 0 for a partition never applied."""
    keys = sorted(partitions)
    found = dict.fromkeys(keys, 0)
    if keys:
        rows = conn.execute(
            "SELECT topic, partition, next_offset FROM applied_offsets o"
            " JOIN unnest(%b::text[], %b::int[]) AS d(topic, partition) USING (topic, partition)"
            " WHERE o.consumer_group = %b",
            [*columns(keys), group],
        ).fetchall()
        found.update({(t, p): n for t, p, n in rows})
    return found


def _copy(cur: psycopg.Cursor, table: str, rows: list[tuple]) -> None:
    if rows:
        with cur.copy(f"COPY {table} ({COPIES[table]}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _holdings(batch: Batch) -> tuple[list, list]:
    balances = [
        (a, b.available, b.held, b.added, b.removed, b.ts) for a, b in batch.balances.items()
    ]
    positions = [
        (a, s, p.available, p.held, p.added, p.ts) for (a, s), p in batch.positions.items()
    ]
    return balances, positions


def _write_market(cur: psycopg.Cursor, batch: Batch) -> None:
    if batch.levels:
        levels = [(s, side, p, q, seq) for (s, side, p), (q, seq) in batch.levels.items()]
        after = cur.execute(UPSERT_LEVELS, columns(levels)).fetchall()
        gone = [r[:3] for r in after if r[3] == 0]
        negative = [r for r in after if r[3] < 0]
        if gone:
            cur.execute(DELETE_LEVELS, columns(gone))
        if negative:
            log.error("book levels below zero (matcher/projector disagree): %s", negative[:5])
    if batch.books:
        books = [(s, first, last, ts) for s, (first, last, ts) in batch.books.items()]
        gaps = cur.execute(BOOK_GAPS, columns([(s, f) for s, f, _, _ in books])).fetchall()
        if gaps:  # the matcher's sequence is gap-free: a gap means lost or foreign events
            log.error("market.events gaps (symbol, book seq, next seq): %s", gaps[:5])
        cur.execute(UPSERT_BOOKS, columns([(s, last, ts) for s, _, last, ts in books]))
    if batch.stats:
        stats = [
            (sym, s.trades, s.volume, s.notional, s.high, s.low, *s.last())
            for sym, s in batch.stats.items()
        ]
        cur.execute(UPSERT_STATS, columns(stats))


def write_rows(cur: psycopg.Cursor, batch: Batch) -> None:
    """Every row change of the batch (inside the caller's transaction)."""
    _copy(cur, "accounts", batch.accounts)
    if batch.symbols:
        cur.execute(INSERT_SYMBOLS, columns(list(batch.symbols.values())))
    _copy(cur, "orders", batch.new_orders())
    updates = batch.order_updates()
    if updates:
        cur.execute(UPDATE_ORDERS, columns(updates))
        if cur.rowcount != len(updates):
            found = {oid for (oid,) in cur.fetchall()}
            missing = [u[0] for u in updates if u[0] not in found]
            log.error("decisions about orders never accepted: %s", missing[:10])
    balances, positions = _holdings(batch)
    if balances:
        cur.execute(MERGE_BALANCES, columns(balances))
    if positions:
        cur.execute(MERGE_POSITIONS, columns(positions))
    _copy(cur, "executions", batch.executions)
    _copy(cur, "audit_log", batch.audit)
    _copy(cur, "trades", batch.trades)
    _write_market(cur, batch)


def apply(
    conn: psycopg.Connection, group: str, spans: list[Span], batch: Batch, *, notify: bool = True
) -> dict[tuple[str, int], int] | None:
    """Write the batch and move the offsets, in one transaction.

    Returns None when applied; otherwise the stored offsets that fenced this writer out (the
    caller seeks there), having written nothing.
    """
    keys = [(s.topic, s.partition) for s in spans]
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(ENSURE_OFFSETS, [group, *columns(keys)])
            stored = {(t, p): n for t, p, n in cur.execute(LOCK_OFFSETS, [*columns(keys), group])}
            if any(stored[(s.topic, s.partition)] != s.start for s in spans):
                raise _Fenced(stored)
            write_rows(cur, batch)
            moved = [(s.topic, s.partition, s.next) for s in spans]
            cur.execute(SET_OFFSETS, [*columns(moved), group])
            if notify:
                payloads = [f"{t}:{p}:{n}" for t, p, n in moved]
                cur.execute(
                    "SELECT pg_notify(%b, p) FROM unnest(%b::text[]) p", [CHANNEL, payloads]
                )
    except _Fenced as fenced:
        return fenced.stored
    return None


class _Fenced(Exception):
    """Rolls the transaction back: the stored offsets are not where this writer started."""

    def __init__(self, stored: dict[tuple[str, int], int]) -> None:
        super().__init__("applied offsets moved under this writer")
        self.stored = stored
