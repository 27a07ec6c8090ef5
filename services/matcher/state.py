"""The matching engine's pure core: one price-time order book per symbol.

No clock, no randomness, no I/O: every command takes the record's timestamp and returns the
events it decided, as tuples (fast to build, easy to compare). Amounts are integers in the units
of services.common.money. The same code runs in the Kafka service, in `replay` and in `verify`.
The rules are in docs/matcher.md.

Layout, chosen for speed: a side is a dict price -> Level (a deque in time priority) plus a heap
of level keys (price for asks, -price for bids) whose top is always a live level; a level that
empties below the top leaves its key in the heap until it surfaces (lazy deletion). A cancelled
order is marked dead (qty 0) and stays in its deque until it reaches the front or the deque is
compacted; each level counts its live orders so an empty level leaves the book at once. Orders
are plain lists (a third of the cost of building an object), read through the index names below.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from heapq import heapify, heappop, heappush, nlargest, nsmallest

BUY, SELL = "BUY", "SELL"
GTC, IOC, FOK, GTD = "GTC", "IOC", "FOK", "GTD"
NONE, CANCEL_NEWEST, CANCEL_OLDEST = "NONE", "CANCEL_NEWEST", "CANCEL_OLDEST"
CANCEL_BOTH, DECREMENT_AND_CANCEL = "CANCEL_BOTH", "DECREMENT_AND_CANCEL"
USER, IOC_REMAINDER, FOK_UNFILLABLE = "USER", "IOC_REMAINDER", "FOK_UNFILLABLE"
POST_ONLY_REASON, SELF_TRADE, EXPIRED, REPLACED = "POST_ONLY", "SELF_TRADE", "EXPIRED", "REPLACED"

SIDES = frozenset((BUY, SELL))
TIFS = frozenset((GTC, IOC, FOK, GTD))
STPS = frozenset((NONE, CANCEL_NEWEST, CANCEL_OLDEST, CANCEL_BOTH, DECREMENT_AND_CANCEL))

# Event tuples: element 0 names the kind, 1 is the symbol's seq (None: private), 2 is ts.
RESTED = "rested"  # (RESTED, seq, ts, order_id, account, side, price, qty)
TRADE = "trade"  # (TRADE, seq, ts, price, qty, maker_id, maker_account, taker_id,
#                   taker_account, taker_side, maker_remaining, taker_remaining)
CANCELLED = "cancelled"  # (CANCELLED, seq, ts, order_id, account, side, price|None, qty,
#                           reason, rested)
REDUCED = "reduced"  # (REDUCED, seq, ts, order_id, account, side, price, qty_removed, remaining,
#                       rested): rested False for a decremented taker, never on the book
REJECTED = "rejected"  # (REJECTED, None, ts, order_id, account, side|None, qty|None,
#                         new_order_id|None, reason); qty set = a refused placement to release

# An order: [open qty (0 = dead: filled or cancelled), id, account, price|None, side, tif,
#            expire_ts|None, post_only, stp]
QTY, OID, ACCOUNT, PRICE, SIDE, TIF, EXPIRE_TS, POST_ONLY, STP = range(9)
Order = list

_NO_LIMIT = 1 << 80  # a market buy's bound on the ask keys: above any price


def terms(o: Order) -> list:
    """An order's fields in the snapshot's order."""
    return [
        o[OID],
        o[ACCOUNT],
        o[SIDE],
        o[PRICE],
        o[QTY],
        o[TIF],
        o[EXPIRE_TS],
        o[POST_ONLY],
        o[STP],
    ]


def from_terms(t: list) -> Order:
    oid, account, side, price, qty, tif, expire_ts, post_only, stp = t
    return [qty, oid, account, price, side, tif, expire_ts, post_only, stp]


class Level(deque):
    """Orders at one price in time priority; dead ones linger until they reach the front."""

    __slots__ = ("live",)


class Book:
    """One symbol's book. Every public event takes the next seq; rejects take none."""

    __slots__ = (
        "_n",
        "ask_keys",
        "asks",
        "bid_keys",
        "bids",
        "expiries",
        "orders",
        "seq",
        "symbol",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.seq = 0
        self.orders: dict[int, Order] = {}  # live resting orders by id
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_keys: list[int] = []  # heap of -price
        self.ask_keys: list[int] = []  # heap of price
        self.expiries: list[tuple] = []  # heap of (expire_ts, order_id, n, order), lazy
        self._n = 0  # unique tie-breaker of expiry entries (never part of the state)

    # -- commands ----------------------------------------------------------------------------
    def place(
        self,
        ts: int,
        oid: int,
        account: str,
        side: str,
        price: int | None,
        qty: int,
        tif: str = GTC,
        expire_ts: int | None = None,
        post_only: bool = False,
        stp: str = NONE,
        budget: int | None = None,
        lot: int = 1,
    ) -> list[tuple]:
        ev: list[tuple] = []
        if self.expiries and self.expiries[0][0] <= ts:
            self._expire(ts, ev)
        if (
            qty <= 0
            or oid in self.orders
            or (price is not None and price <= 0)
            or side not in SIDES
            or tif not in TIFS
            or stp not in STPS
            or lot <= 0
            or (tif == GTD and expire_ts is None)
            or (budget is not None and budget < 0)
        ):
            why = _why(self, oid, qty, price, side, tif, stp, lot, budget)
            # a duplicate id releases nothing: the hold is the resting order's
            release = None if oid in self.orders else qty
            ev.append((REJECTED, None, ts, oid, account, side, release, None, why))
            return ev
        o = [qty, oid, account, price, side, tif, expire_ts, post_only, stp]
        if price is None or post_only or tif in (FOK, GTD):
            self._enter(o, ts, budget, lot, ev)
            return ev
        # a plain limit GTC or IOC: the common case, inlined
        if side == BUY:
            keys = self.ask_keys
            if keys and keys[0] <= price:
                self._take(o, self.asks, keys, 1, price, None, 1, ts, ev)
                if not o[0]:
                    return ev
            levels, keys, key = self.bids, self.bid_keys, -price
        else:
            keys = self.bid_keys
            if keys and keys[0] <= -price:
                self._take(o, self.bids, keys, -1, -price, None, 1, ts, ev)
                if not o[0]:
                    return ev
            levels, keys, key = self.asks, self.ask_keys, price
        if tif == IOC:
            self._drop(o, ts, IOC_REMAINDER, ev)
            return ev
        level = levels.get(price)
        if level is None:
            level = self._new_level(levels, keys, key)
        level.append(o)
        level.live += 1
        self.orders[oid] = o
        seq = self.seq = self.seq + 1
        if ev:
            ev.append((RESTED, seq, ts, oid, account, side, price, o[0]))
            return ev
        return [(RESTED, seq, ts, oid, account, side, price, o[0])]

    def cancel(self, ts: int, oid: int, account: str | None = None) -> list[tuple]:
        ev: list[tuple] = []
        if self.expiries and self.expiries[0][0] <= ts:
            self._expire(ts, ev)
        o = self.orders.get(oid)
        if o is None or (account is not None and o[ACCOUNT] != account):
            ev.append((REJECTED, None, ts, oid, account, None, None, None, "unknown order"))
            return ev
        # self._close(o, ts, USER, ev), inlined: cancels are half the traffic
        qty = o[0]
        o[0] = 0
        del self.orders[oid]
        price = o[PRICE]
        if o[SIDE] == BUY:
            levels, keys, key = self.bids, self.bid_keys, -price
        else:
            levels, keys, key = self.asks, self.ask_keys, price
        level = levels[price]
        live = level.live = level.live - 1
        if not live:
            del levels[price]
            if keys[0] == key:
                heappop(keys)
                sign = -1 if key < 0 else 1
                while keys and keys[0] * sign not in levels:
                    heappop(keys)
        elif len(level) > 2 * live + 16:
            self._compact(level)
        seq = self.seq = self.seq + 1
        if ev:
            ev.append((CANCELLED, seq, ts, oid, o[ACCOUNT], o[SIDE], price, qty, USER, True))
            return ev
        return [(CANCELLED, seq, ts, oid, o[ACCOUNT], o[SIDE], price, qty, USER, True)]

    def reduce(self, ts: int, oid: int, account: str | None, qty: int) -> list[tuple]:
        """Remove qty from a resting order's open quantity; it keeps its place."""
        ev: list[tuple] = []
        if self.expiries and self.expiries[0][0] <= ts:
            self._expire(ts, ev)
        order = self.orders.get(oid)
        if order is None or (account is not None and order[ACCOUNT] != account):
            ev.append((REJECTED, None, ts, oid, account, None, None, None, "unknown order"))
        elif qty <= 0:
            ev.append(
                (REJECTED, None, ts, oid, account, None, None, None, "quantity must be positive")
            )
        elif qty >= order[QTY]:  # reducing to zero (or past it) cancels
            self._close(order, ts, USER, ev)
        else:
            order[QTY] -= qty
            self.seq += 1
            ev.append(
                (
                    REDUCED,
                    self.seq,
                    ts,
                    oid,
                    order[ACCOUNT],
                    order[SIDE],
                    order[PRICE],
                    qty,
                    order[QTY],
                    True,
                )
            )
        return ev

    def replace(
        self, ts: int, oid: int, account: str | None, new_oid: int, price: int, qty: int
    ) -> list[tuple]:
        """Close oid (REPLACED) and enter new_oid with its terms at a new price and quantity."""
        ev: list[tuple] = []
        if self.expiries and self.expiries[0][0] <= ts:
            self._expire(ts, ev)
        order = self.orders.get(oid)
        why = None
        if order is None or (account is not None and order[ACCOUNT] != account):
            why = "unknown order"
        elif qty <= 0:
            why = "quantity must be positive"
        elif price is None or price <= 0:
            why = "price must be positive"
        elif new_oid in self.orders:
            why = "duplicate order id"
        if why is not None:
            ev.append((REJECTED, None, ts, oid, account, None, None, new_oid, why))
            return ev
        self._close(order, ts, REPLACED, ev)
        new = order[:]  # same account, side, tif, expiry, post-only, stp
        new[QTY], new[OID], new[PRICE] = qty, new_oid, price
        self._enter(new, ts, None, 1, ev)
        return ev

    # -- an arriving order -------------------------------------------------------------------
    def _enter(self, o: Order, ts: int, budget: int | None, lot: int, ev: list) -> None:
        price, tif = o[PRICE], o[TIF]
        if o[SIDE] == BUY:
            levels, keys, sign = self.asks, self.ask_keys, 1
            if price is None:
                bound = _NO_LIMIT
            else:
                bound, budget = price, None  # a budget caps market buys only
        else:
            levels, keys, sign, budget = self.bids, self.bid_keys, -1, None
            bound = 0 if price is None else -price
        if keys and keys[0] <= bound:  # it would take
            if o[POST_ONLY]:
                return self._drop(o, ts, POST_ONLY_REASON, ev)
            if tif == GTD and o[EXPIRE_TS] <= ts:
                return self._drop(o, ts, EXPIRED, ev)
            if tif == FOK and not self._fillable(o, levels, sign, bound, budget, lot):
                return self._drop(o, ts, FOK_UNFILLABLE, ev)
            self._take(o, levels, keys, sign, bound, budget, lot, ts, ev)
            if not o[QTY]:
                return None
        elif tif != GTC:
            if price is None and o[POST_ONLY]:
                return self._drop(o, ts, POST_ONLY_REASON, ev)
            if tif == GTD and o[EXPIRE_TS] <= ts:
                return self._drop(o, ts, EXPIRED, ev)
            if tif == FOK:
                return self._drop(o, ts, FOK_UNFILLABLE, ev)
        elif price is None and o[POST_ONLY]:
            return self._drop(o, ts, POST_ONLY_REASON, ev)
        if price is None or tif in (IOC, FOK):
            return self._drop(o, ts, IOC_REMAINDER, ev)
        # rest (inlined: the commonest path)
        if sign == 1:
            levels, keys, key = self.bids, self.bid_keys, -price
        else:
            levels, keys, key = self.asks, self.ask_keys, price
        level = levels.get(price)
        if level is None:
            level = self._new_level(levels, keys, key)
        level.append(o)
        level.live += 1
        self.orders[o[OID]] = o
        self.seq += 1
        ev.append((RESTED, self.seq, ts, o[OID], o[ACCOUNT], o[SIDE], price, o[QTY]))
        if tif == GTD:
            self._n += 1
            heappush(self.expiries, (o[EXPIRE_TS], o[OID], self._n, o))
        return None

    def _take(self, o, levels, keys, sign, bound, budget, lot, ts, ev) -> None:
        """Trade o against the opposite side while it crosses: the hot loop."""
        orders = self.orders
        oid, account, side = o[OID], o[ACCOUNT], o[SIDE]
        guard = o[STP] != NONE
        rem = o[QTY]
        seq = self.seq
        while rem and keys:
            key = keys[0]
            if key > bound:
                break
            price = key * sign
            level = levels[price]
            maker = level[0]
            while not maker[0]:
                level.popleft()
                maker = level[0]
            if guard and maker[2] == account:  # maker[ACCOUNT]
                o[QTY], self.seq = rem, seq
                self._prevent(o, maker, ts, ev)
                rem, seq = o[QTY], self.seq
                continue
            mq = maker[0]
            q = rem if rem < mq else mq
            if budget is not None:
                cost = q * price
                if cost > budget:  # buy only whole lots the rest of the budget pays for
                    q = budget // price // lot * lot
                    if q <= 0:
                        break
                    cost = q * price
                budget -= cost
            mq -= q
            rem -= q
            maker[0] = mq
            seq += 1
            ev.append((TRADE, seq, ts, price, q, maker[1], maker[2], oid, account, side, mq, rem))
            if not mq:
                level.popleft()
                del orders[maker[1]]
                level.live -= 1
                if not level.live:
                    del levels[price]
                    heappop(keys)
                    while keys and keys[0] * sign not in levels:
                        heappop(keys)
        o[QTY], self.seq = rem, seq

    def _prevent(self, o: Order, maker: Order, ts: int, ev: list) -> None:
        """Self-trade prevention, decided by the taker's mode (Coinbase semantics)."""
        mode = o[STP]
        if mode == CANCEL_OLDEST:
            self._close(maker, ts, SELF_TRADE, ev)
        elif mode == CANCEL_NEWEST:
            self._drop(o, ts, SELF_TRADE, ev)
        elif mode == CANCEL_BOTH:
            self._close(maker, ts, SELF_TRADE, ev)
            self._drop(o, ts, SELF_TRADE, ev)
        else:  # DECREMENT_AND_CANCEL: the smaller is cancelled, the larger shrinks by as much
            small = min(maker[QTY], o[QTY])
            if maker[QTY] == small:
                self._close(maker, ts, SELF_TRADE, ev)
            else:
                maker[QTY] -= small
                self._reduced(maker, maker[PRICE], small, ts, ev, True)
            if o[QTY] == small:
                self._drop(o, ts, SELF_TRADE, ev)
            else:
                o[QTY] -= small
                self._reduced(o, o[PRICE] or 0, small, ts, ev, False)  # price 0: a market order

    def _reduced(self, o: Order, price: int, qty: int, ts: int, ev: list, rested: bool) -> None:
        self.seq += 1
        ev.append((REDUCED, self.seq, ts, o[OID], o[ACCOUNT], o[SIDE], price, qty, o[QTY], rested))

    def _fillable(self, o, levels, sign, bound, budget, lot) -> bool:
        """Whether a FOK fills completely now: whether it would, as an IOC, trade it all."""
        need = o[QTY]
        mode = o[STP]
        for key in sorted(k for k in (p * sign for p in levels) if k <= bound):
            price = key * sign
            for maker in levels[price]:
                if not maker[QTY]:
                    continue
                if mode != NONE and maker[ACCOUNT] == o[ACCOUNT]:
                    if mode == CANCEL_OLDEST:
                        continue  # the maker would be cancelled, the taker goes on
                    return False  # the taker would be cancelled or decremented
                q = need if need < maker[QTY] else maker[QTY]
                if budget is not None:
                    if q * price > budget:
                        return False  # the budget runs out before the order is filled
                    budget -= q * price
                need -= q
                if not need:
                    return True
        return False

    # -- book upkeep -------------------------------------------------------------------------
    @staticmethod
    def _new_level(levels: dict, keys: list, key: int) -> Level:
        price = -key if key < 0 else key
        level = levels[price] = Level()
        level.live = 0
        heappush(keys, key)
        if len(keys) > 2 * len(levels) + 64:  # too many stale keys: rebuild the heap
            sign = -1 if key < 0 else 1
            keys[:] = [sign * p for p in levels]
            heapify(keys)
        return level

    def _close(self, o: Order, ts: int, reason: str, ev: list) -> None:
        """Take a resting order off the book without trading."""
        qty = o[QTY]
        o[QTY] = 0
        del self.orders[o[OID]]
        price = o[PRICE]
        if o[SIDE] == BUY:
            levels, keys, key = self.bids, self.bid_keys, -price
        else:
            levels, keys, key = self.asks, self.ask_keys, price
        level = levels[price]
        level.live -= 1
        if not level.live:
            del levels[price]
            if keys[0] == key:
                heappop(keys)
                sign = -1 if key < 0 else 1
                while keys and keys[0] * sign not in levels:
                    heappop(keys)
        elif len(level) > 2 * level.live + 16:
            self._compact(level)
        self.seq += 1
        ev.append((CANCELLED, self.seq, ts, o[OID], o[ACCOUNT], o[SIDE], price, qty, reason, True))

    @staticmethod
    def _compact(level: Level) -> None:
        """Drop the dead orders of a level that holds many (cancels leave them behind)."""
        live = [x for x in level if x[QTY]]
        level.clear()
        level.extend(live)

    def _drop(self, o: Order, ts: int, reason: str, ev: list) -> None:
        """Cancel what is left of an arriving order that never rested."""
        qty = o[QTY]
        o[QTY] = 0
        self.seq += 1
        ev.append(
            (CANCELLED, self.seq, ts, o[OID], o[ACCOUNT], o[SIDE], o[PRICE], qty, reason, False)
        )

    def _expire(self, ts: int, ev: list) -> None:
        """Cancel resting GTD orders whose expire_ts <= ts, earliest (then lowest id) first."""
        expiries = self.expiries
        while expiries and expiries[0][0] <= ts:
            order = heappop(expiries)[3]
            if order[QTY]:
                self._close(order, ts, EXPIRED, ev)

    # -- views, snapshot, hash ---------------------------------------------------------------
    def best_bid(self) -> int | None:
        return -self.bid_keys[0] if self.bid_keys else None

    def best_ask(self) -> int | None:
        return self.ask_keys[0] if self.ask_keys else None

    def resting(self, side: str) -> list[Order]:
        """Live orders of one side, best price first, then time priority."""
        levels = self.bids if side == BUY else self.asks
        prices = sorted(levels, reverse=side == BUY)
        return [o for p in prices for o in levels[p] if o[QTY]]

    def depth(self, side: str) -> list[tuple[int, int]]:
        """(price, total open quantity) per level, best first."""
        levels = self.bids if side == BUY else self.asks
        prices = sorted(levels, reverse=side == BUY)
        return [(p, sum(o[QTY] for o in levels[p])) for p in prices]

    def top(self, side: str, n: int) -> list[tuple[int, int]]:
        """(price, total open quantity) of the best ``n`` levels of one side, best first."""
        levels = self.bids if side == BUY else self.asks
        prices = nlargest(n, levels) if side == BUY else nsmallest(n, levels)
        return [(p, sum(o[QTY] for o in levels[p])) for p in prices]

    def state(self) -> dict:
        """Everything that decides future events, in a canonical order."""
        return {
            "seq": self.seq,
            "orders": [terms(o) for side in (BUY, SELL) for o in self.resting(side)],
        }

    def state_hash(self) -> str:
        return hashlib.sha256(_canonical(self.state())).hexdigest()

    @classmethod
    def from_state(cls, symbol: str, state: dict) -> Book:
        book = cls(symbol)
        for t in state["orders"]:  # resting them again in order rebuilds time priority
            o = from_terms(t)
            if o[SIDE] == BUY:
                levels, keys, key = book.bids, book.bid_keys, -o[PRICE]
            else:
                levels, keys, key = book.asks, book.ask_keys, o[PRICE]
            level = levels.get(o[PRICE]) or book._new_level(levels, keys, key)
            level.append(o)
            level.live += 1
            book.orders[o[OID]] = o
            if o[TIF] == GTD:
                book._n += 1
                heappush(book.expiries, (o[EXPIRE_TS], o[OID], book._n, o))
        book.seq = state["seq"]
        return book


def _why(book: Book, oid, qty, price, side, tif, stp, lot, budget) -> str:
    """The reason a placement is refused (the slow path only)."""
    if oid in book.orders:
        return "duplicate order id"
    if qty <= 0:
        return "quantity must be positive"
    if price is not None and price <= 0:
        return "price must be positive"
    if side not in SIDES:
        return "unknown side"
    if tif not in TIFS:
        return "unknown time in force"
    if stp not in STPS:
        return "unknown self-trade prevention mode"
    if lot <= 0:
        return "lot must be positive"
    if budget is not None and budget < 0:
        return "budget must not be negative"
    return "GTD order needs expire_ts"


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Matcher:
    """Every book of one input partition: the matcher's whole pure state."""

    __slots__ = ("books",)

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}

    def book(self, symbol: str) -> Book:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = Book(symbol)
        return book

    def place(
        self,
        symbol: str,
        ts: int,
        oid: int,
        account: str,
        side: str,
        price: int | None,
        qty: int,
        tif: str = GTC,
        expire_ts: int | None = None,
        post_only: bool = False,
        stp: str = NONE,
        budget: int | None = None,
        lot: int = 1,
    ) -> list[tuple]:
        book = self.books.get(symbol) or self.book(symbol)
        return book.place(
            ts, oid, account, side, price, qty, tif, expire_ts, post_only, stp, budget, lot
        )

    def cancel(self, symbol: str, ts: int, oid: int, account: str | None = None) -> list[tuple]:
        return (self.books.get(symbol) or self.book(symbol)).cancel(ts, oid, account)

    def reduce(self, symbol: str, ts: int, oid: int, account: str | None, qty: int) -> list[tuple]:
        return self.book(symbol).reduce(ts, oid, account, qty)

    def replace(
        self,
        symbol: str,
        ts: int,
        oid: int,
        account: str | None,
        new_oid: int,
        price: int,
        qty: int,
    ) -> list[tuple]:
        return self.book(symbol).replace(ts, oid, account, new_oid, price, qty)

    def state(self) -> dict:
        """Books that hold anything (an order or a used seq), by symbol."""
        return {s: b.state() for s, b in sorted(self.books.items()) if b.seq or b.orders}

    def snapshot(self) -> bytes:
        return _canonical(self.state())

    def state_hash(self) -> str:
        return hashlib.sha256(self.snapshot()).hexdigest()

    @classmethod
    def restore(cls, data: bytes) -> Matcher:
        matcher = cls()
        for symbol, state in json.loads(data).items():
            matcher.books[symbol] = Book.from_state(symbol, state)
        return matcher
