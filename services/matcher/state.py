"""The matching engine's pure core: one price-time order book per symbol.

No clock, no randomness, no I/O: every method takes the record's timestamp and returns the
events it decided, as tuples (fast to build, easy to compare). Amounts are integers in the units
of services.common.money. The same code runs in the Kafka service, in `replay` and in `verify`.

Layout for speed: a side is a dict price -> Level (a deque in time priority) plus a heap of
level keys (price for asks, -price for bids) whose top is always a live level; emptied levels
below the top stay in the heap until they surface (lazy deletion). A cancelled order is marked
dead (qty 0) and stays in its deque until it reaches the front; each level counts its live
orders so an empty level leaves the book at once. See docs/matcher.md for the rules.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from heapq import heapify, heappop, heappush

BUY, SELL = "BUY", "SELL"
GTC, IOC, FOK, GTD = "GTC", "IOC", "FOK", "GTD"
NONE, CANCEL_NEWEST, CANCEL_OLDEST = "NONE", "CANCEL_NEWEST", "CANCEL_OLDEST"
CANCEL_BOTH, DECREMENT_AND_CANCEL = "CANCEL_BOTH", "DECREMENT_AND_CANCEL"
USER, IOC_REMAINDER, FOK_UNFILLABLE, POST_ONLY = (
    "USER",
    "IOC_REMAINDER",
    "FOK_UNFILLABLE",
    "POST_ONLY",
)
SELF_TRADE, EXPIRED, REPLACED = "SELF_TRADE", "EXPIRED", "REPLACED"

SIDES = frozenset((BUY, SELL))
TIFS = frozenset((GTC, IOC, FOK, GTD))
STPS = frozenset((NONE, CANCEL_NEWEST, CANCEL_OLDEST, CANCEL_BOTH, DECREMENT_AND_CANCEL))

# Event tuples; element 0 names the kind, element 1 is the symbol's seq (None: private), 2 is ts.
RESTED = "rested"  # (RESTED, seq, ts, order_id, account, side, price, qty)
TRADE = "trade"  # (TRADE, seq, ts, price, qty, maker_id, maker_account, taker_id,
#                  taker_account, taker_side, maker_remaining, taker_remaining)
CANCELLED = "cancelled"  # (CANCELLED, seq, ts, order_id, account, side, price|None, qty,
#                          reason, rested)
REDUCED = "reduced"  # (REDUCED, seq, ts, order_id, account, side, price, qty_removed, remaining)
REJECTED = "rejected"  # (REJECTED, None, ts, order_id, account, side|None, qty|None,
#                        new_order_id|None, reason); qty set = a refused placement to release

_NO_LIMIT = 1 << 80  # a market buy's bound on the ask keys: above any long price


class Order:
    __slots__ = ("account", "expire_ts", "id", "post_only", "price", "qty", "side", "stp", "tif")

    def __init__(self, oid, account, side, price, qty, tif, expire_ts, post_only, stp) -> None:
        self.id = oid
        self.account = account
        self.side = side
        self.price = price
        self.qty = qty  # open quantity; 0 = dead (filled or cancelled)
        self.tif = tif
        self.expire_ts = expire_ts
        self.post_only = post_only
        self.stp = stp

    def terms(self) -> list:
        return [
            self.id,
            self.account,
            self.side,
            self.price,
            self.qty,
            self.tif,
            self.expire_ts,
            self.post_only,
            self.stp,
        ]


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
        self._n = 0  # tie-breaker for expiry entries, never compared beyond uniqueness

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
            ev.append((REJECTED, None, ts, oid, account, side, qty, None, why))
            return ev
        order = Order(oid, account, side, price, qty, tif, expire_ts, post_only, stp)
        self._enter(order, ts, budget, lot, ev)
        return ev

    def cancel(self, ts: int, oid: int, account: str | None = None) -> list[tuple]:
        ev: list[tuple] = []
        if self.expiries and self.expiries[0][0] <= ts:
            self._expire(ts, ev)
        order = self.orders.get(oid)
        if order is None or (account is not None and order.account != account):
            ev.append((REJECTED, None, ts, oid, account, None, None, None, "unknown order"))
            return ev
        self._close(order, ts, USER, ev)
        return ev

    def reduce(self, ts: int, oid: int, account: str | None, qty: int) -> list[tuple]:
        """Remove qty from a resting order's open quantity; it keeps its place."""
        ev: list[tuple] = []
        if self.expiries and self.expiries[0][0] <= ts:
            self._expire(ts, ev)
        order = self.orders.get(oid)
        if order is None or (account is not None and order.account != account):
            ev.append((REJECTED, None, ts, oid, account, None, None, None, "unknown order"))
        elif qty <= 0:
            ev.append(
                (REJECTED, None, ts, oid, account, None, None, None, "quantity must be positive")
            )
        elif qty >= order.qty:  # reducing to zero (or past it) cancels
            self._close(order, ts, USER, ev)
        else:
            order.qty -= qty
            self.seq += 1
            ev.append(
                (REDUCED, self.seq, ts, oid, order.account, order.side, order.price, qty, order.qty)
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
        if order is None or (account is not None and order.account != account):
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
        new = Order(
            new_oid,
            order.account,
            order.side,
            price,
            qty,
            order.tif,
            order.expire_ts,
            order.post_only,
            order.stp,
        )
        self._enter(new, ts, None, 1, ev)
        return ev

    # -- an arriving order -------------------------------------------------------------------
    def _enter(self, o: Order, ts: int, budget: int | None, lot: int, ev: list) -> None:
        price = o.price
        if price is not None or o.side != BUY:
            budget = None  # a budget caps market buys only
        if o.side == BUY:
            levels, keys, sign = self.asks, self.ask_keys, 1
            bound = _NO_LIMIT if price is None else price
        else:
            levels, keys, sign = self.bids, self.bid_keys, -1
            bound = 0 if price is None else -price
        crosses = bool(keys) and keys[0] <= bound
        if o.post_only and (crosses or price is None):
            return self._drop(o, ts, POST_ONLY, ev)
        if o.tif == GTD and o.expire_ts <= ts:
            return self._drop(o, ts, EXPIRED, ev)
        if o.tif == FOK and not (
            crosses and self._fillable(o, levels, keys, sign, bound, budget, lot)
        ):
            return self._drop(o, ts, FOK_UNFILLABLE, ev)
        if crosses:
            self._take(o, levels, keys, sign, bound, budget, lot, ts, ev)
            if not o.qty:
                return None
        if price is None or o.tif == IOC or o.tif == FOK:
            return self._drop(o, ts, IOC_REMAINDER, ev)
        return self._rest(o, ts, ev)

    def _take(self, o, levels, keys, sign, bound, budget, lot, ts, ev) -> None:
        """Trade o against the opposite side while it crosses; the hot loop."""
        orders = self.orders
        oid, account, side = o.id, o.account, o.side
        guard = o.stp != NONE
        rem = o.qty
        seq = self.seq
        while rem and keys:
            key = keys[0]
            if key > bound:
                break
            price = key * sign
            level = levels[price]
            maker = level[0]
            while not maker.qty:
                level.popleft()
                maker = level[0]
            if guard and maker.account == account:
                o.qty, self.seq = rem, seq
                self._prevent(o, maker, ts, ev)
                rem, seq = o.qty, self.seq
                continue
            mq = maker.qty
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
            maker.qty = mq
            seq += 1
            ev.append(
                (TRADE, seq, ts, price, q, maker.id, maker.account, oid, account, side, mq, rem)
            )
            if not mq:
                level.popleft()
                del orders[maker.id]
                level.live -= 1
                if not level.live:
                    del levels[price]
                    heappop(keys)
                    while keys and keys[0] * sign not in levels:
                        heappop(keys)
        o.qty, self.seq = rem, seq

    def _prevent(self, o: Order, maker: Order, ts: int, ev: list) -> None:
        """Self-trade prevention, decided by the taker's mode (Coinbase semantics)."""
        mode = o.stp
        if mode == CANCEL_OLDEST:
            self._close(maker, ts, SELF_TRADE, ev)
        elif mode == CANCEL_NEWEST:
            self._drop(o, ts, SELF_TRADE, ev)
        elif mode == CANCEL_BOTH:
            self._close(maker, ts, SELF_TRADE, ev)
            self._drop(o, ts, SELF_TRADE, ev)
        else:  # DECREMENT_AND_CANCEL: the smaller is cancelled, the larger shrinks by as much
            small = min(maker.qty, o.qty)
            if maker.qty == small:
                self._close(maker, ts, SELF_TRADE, ev)
            else:
                maker.qty -= small
                self.seq += 1
                ev.append(
                    (
                        REDUCED,
                        self.seq,
                        ts,
                        maker.id,
                        maker.account,
                        maker.side,
                        maker.price,
                        small,
                        maker.qty,
                    )
                )
            if o.qty == small:
                self._drop(o, ts, SELF_TRADE, ev)
            else:
                o.qty -= small
                self.seq += 1
                ev.append(
                    (REDUCED, self.seq, ts, o.id, o.account, o.side, o.price or 0, small, o.qty)
                )

    def _fillable(self, o, levels, keys, sign, bound, budget, lot) -> bool:
        """Whether a FOK fills completely now, self-trade prevention and budget included."""
        need = o.qty
        own_stops = o.stp in (CANCEL_NEWEST, CANCEL_BOTH, DECREMENT_AND_CANCEL)
        own_skips = o.stp == CANCEL_OLDEST
        for key in sorted(k for k in (p * sign for p in levels) if k <= bound):
            price = key * sign
            for maker in levels[price]:
                if not maker.qty:
                    continue
                if maker.account == o.account and (own_stops or own_skips):
                    if own_stops:
                        return False
                    continue
                q = need if need < maker.qty else maker.qty
                if budget is not None:
                    if q * price > budget:
                        return False  # the budget runs out before the order is filled
                    budget -= q * price
                need -= q
                if not need:
                    return True
        return False

    # -- book upkeep -------------------------------------------------------------------------
    def _rest(self, o: Order, ts: int, ev: list) -> None:
        price = o.price
        if o.side == BUY:
            levels, keys, sign = self.bids, self.bid_keys, -1
        else:
            levels, keys, sign = self.asks, self.ask_keys, 1
        level = levels.get(price)
        if level is None:
            level = levels[price] = Level()
            level.live = 0
            heappush(keys, sign * price)
            if len(keys) > 2 * len(levels) + 64:  # too many stale keys: rebuild the heap
                keys[:] = [sign * p for p in levels]
                heapify(keys)
        level.append(o)
        level.live += 1
        self.orders[o.id] = o
        self.seq += 1
        ev.append((RESTED, self.seq, ts, o.id, o.account, o.side, price, o.qty))
        if o.tif == GTD:
            self._n += 1
            heappush(self.expiries, (o.expire_ts, o.id, self._n, o))

    def _close(self, o: Order, ts: int, reason: str, ev: list) -> None:
        """Take a resting order off the book without trading."""
        qty = o.qty
        o.qty = 0
        del self.orders[o.id]
        price = o.price
        if o.side == BUY:
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
        elif len(level) > 2 * level.live + 16:  # many dead orders: compact the deque
            live = [x for x in level if x.qty]
            level.clear()
            level.extend(live)
        self.seq += 1
        ev.append((CANCELLED, self.seq, ts, o.id, o.account, o.side, price, qty, reason, True))

    def _drop(self, o: Order, ts: int, reason: str, ev: list) -> None:
        """Cancel what is left of an arriving order that never rested."""
        qty = o.qty
        o.qty = 0
        self.seq += 1
        ev.append((CANCELLED, self.seq, ts, o.id, o.account, o.side, o.price, qty, reason, False))

    def _expire(self, ts: int, ev: list) -> None:
        """Cancel resting GTD orders whose expire_ts <= ts, earliest (then lowest id) first."""
        expiries = self.expiries
        while expiries and expiries[0][0] <= ts:
            order = heappop(expiries)[3]
            if order.qty:
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
        return [o for p in prices for o in levels[p] if o.qty]

    def depth(self, side: str) -> list[tuple[int, int]]:
        """(price, total open quantity) per level, best first."""
        levels = self.bids if side == BUY else self.asks
        prices = sorted(levels, reverse=side == BUY)
        return [(p, sum(o.qty for o in levels[p])) for p in prices]

    def state(self) -> dict:
        """Everything that decides future events, in a canonical order."""
        return {
            "seq": self.seq,
            "orders": [o.terms() for side in (BUY, SELL) for o in self.resting(side)],
        }

    def state_hash(self) -> str:
        return hashlib.sha256(_canonical(self.state())).hexdigest()

    @classmethod
    def from_state(cls, symbol: str, state: dict) -> Book:
        book = cls(symbol)
        book.seq = state["seq"]
        ev: list[tuple] = []
        for terms in state["orders"]:
            book._rest(Order(*terms), 0, ev)
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


class Exchange:
    """Every book of one input partition: the matcher's whole pure state."""

    __slots__ = ("books",)

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}

    def book(self, symbol: str) -> Book:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = Book(symbol)
        return book

    def place(self, symbol: str, *args, **kwargs) -> list[tuple]:
        return self.book(symbol).place(*args, **kwargs)

    def cancel(self, symbol: str, ts: int, oid: int, account: str | None = None) -> list[tuple]:
        return self.book(symbol).cancel(ts, oid, account)

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
    def restore(cls, data: bytes) -> Exchange:
        exchange = cls()
        for symbol, state in json.loads(data).items():
            exchange.books[symbol] = Book.from_state(symbol, state)
        return exchange
