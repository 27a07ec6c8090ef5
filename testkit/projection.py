"""The projection tables in memory: what services/projector/store.py's SQL does with a batch.

``Tables.apply(batch)`` takes a ``services.projector.rows.Batch`` (the projector's real fold) and
changes rows as the store's statements do: appends keyed by their primary keys (a second row with
the same key is a problem, as it would be a unique violation), in-place updates merged per key,
book levels summed and dropped at zero. What the store only logs (an update of an order never
accepted, a level below zero, a gap in a book's sequence) is collected in ``problems``. Two
Tables built from the same events in different batches must be equal: rebuild = incremental.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from services.projector.rows import Batch, Stats

# append-only table -> the primary key of one of its rows (services/projector/schema.py)
APPEND_KEYS = {
    "accounts": lambda r: r[0],
    "audit": lambda r: (r[0], r[1]),  # (src_partition, src_offset) of account.events
    "executions": lambda r: (r[0], r[1]),  # (order_id, seq)
    "trades": lambda r: (r[0], r[1]),  # (symbol, seq)
}
# an orders row, as Batch.new_orders() lays it out
OPEN_QTY, EXEC_QTY, EXEC_NOTIONAL, CANCELLED_QTY, CANCELLED_TS = 13, 14, 15, 16, 17
REDUCED_QTY, CLOSE_REASON, HOLD, UPDATED_TS = 18, 19, 20, 21


@dataclasses.dataclass
class Tables:
    appended: dict[str, dict[Any, tuple]] = dataclasses.field(
        default_factory=lambda: {name: {} for name in APPEND_KEYS}
    )
    symbols: dict[str, tuple] = dataclasses.field(default_factory=dict)
    orders: dict[int, list] = dataclasses.field(default_factory=dict)
    balances: dict[str, list[int]] = dataclasses.field(
        default_factory=dict
    )  # avail, held, dep, wd, ts
    # (account, symbol) -> [available, held, issued, updated ts]
    positions: dict[tuple[str, str], list[int]] = dataclasses.field(default_factory=dict)
    levels: dict[tuple[str, str, int], list[int]] = dataclasses.field(
        default_factory=dict
    )  # qty, seq
    books: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # seq, ts
    stats: dict[str, Stats] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list, compare=False)

    def apply(self, batch: Batch) -> None:
        self._append("accounts", batch.accounts)
        for symbol, row in batch.symbols.items():
            self.symbols.setdefault(symbol, row)  # ON CONFLICT DO NOTHING: the first wins
        self._orders(batch)
        self._holdings(batch)
        self._append("executions", batch.executions)
        self._append("audit", batch.audit)
        self._append("trades", batch.trades)
        self._market(batch)

    def _append(self, table: str, found: list[tuple]) -> None:
        rows_by_key, key = self.appended[table], APPEND_KEYS[table]
        for row in found:
            k = key(row)
            if k in rows_by_key:
                self.problems.append(f"{table}: a second row with key {k}")
            rows_by_key[k] = row

    def _orders(self, batch: Batch) -> None:
        for row in batch.new_orders():
            if row[0] in self.orders:
                self.problems.append(f"orders: order {row[0]} accepted twice")
            self.orders[row[0]] = list(row)
        for (
            oid,
            open_qty,
            qty,
            notional,
            c_qty,
            c_ts,
            r_qty,
            reason,
            hold,
            ts,
        ) in batch.order_updates():
            o = self.orders.get(oid)
            if o is None:
                self.problems.append(f"orders: decisions about order {oid}, never accepted")
                continue
            o[OPEN_QTY:] = [
                open_qty, o[EXEC_QTY] + qty, o[EXEC_NOTIONAL] + notional,
                o[CANCELLED_QTY] + c_qty, o[CANCELLED_TS] if c_ts is None else c_ts,
                o[REDUCED_QTY] + r_qty, o[CLOSE_REASON] if reason is None else reason,
                o[HOLD] if hold is None else hold, ts, *o[UPDATED_TS + 1 :],
            ]  # fmt: skip

    def _holdings(self, batch: Batch) -> None:
        for account, h in batch.balances.items():
            old = self.balances.get(account)
            held = (0 if old is None else old[1]) if h.held is None else h.held
            sums = (0, 0) if old is None else (old[2], old[3])
            added, removed = sums[0] + h.added, sums[1] + h.removed
            self.balances[account] = [h.available, held, added, removed, h.ts]
        for key, h in batch.positions.items():
            old = self.positions.get(key)
            held = (0 if old is None else old[1]) if h.held is None else h.held
            issued = 0 if old is None else old[2]
            self.positions[key] = [h.available, held, issued + h.added, h.ts]

    def _market(self, batch: Batch) -> None:
        for key, (delta, seq) in batch.levels.items():
            qty = self.levels.get(key, [0, 0])[0] + delta
            if qty < 0:
                self.problems.append(f"book level {key} below zero: {qty}")
            if qty == 0:
                self.levels.pop(key, None)
            else:
                self.levels[key] = [qty, seq]
        for symbol, (first, last, ts) in batch.books.items():
            old = self.books.get(symbol)
            if first != (1 if old is None else old[0] + 1):  # gap-free from seq 1
                self.problems.append(f"market.events gap: {symbol} at {old[0]}, next {first}")
            self.books[symbol] = [last, ts]
        for symbol, s in batch.stats.items():
            old = self.stats.get(symbol)
            if old is not None:
                s = dataclasses.replace(
                    s,
                    trades=old.trades + s.trades,
                    volume=old.volume + s.volume,
                    notional=old.notional + s.notional,
                    high=max(old.high, s.high),
                    low=min(old.low, s.low),
                )
            self.stats[symbol] = s
