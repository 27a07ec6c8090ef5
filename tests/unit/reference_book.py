"""A naive order book, written for clarity, to check the fast one against (differential tests).

One flat list of resting orders; the best order is found by sorting on every step. A FOK order is
tried on a deep copy of the book as an IOC: it executes only if that copy traded its whole
quantity. It emits the same event tuples as services.matcher.state (see its docstring).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

from hypothesis import strategies as st

from services.matcher.state import OID, PRICE, QTY, SIDE, Book

BUY, SELL = "BUY", "SELL"


@dataclass
class RefOrder:
    id: int
    account: str
    side: str
    price: int | None
    qty: int
    tif: str
    expire_ts: int | None
    post_only: bool
    stp: str
    arrival: int = 0


class ReferenceBook:
    def __init__(self) -> None:
        self.seq = 0
        self.resting: list[RefOrder] = []
        self.arrivals = 0
        self.events: list[tuple] = []

    # -- helpers -------------------------------------------------------------------------------
    def emit(self, kind: str, *fields) -> None:
        self.seq += 1
        self.events.append((kind, self.seq, *fields))

    def find(self, oid: int, account: str | None) -> RefOrder | None:
        for o in self.resting:
            if o.id == oid and (account is None or o.account == account):
                return o
        return None

    def side(self, side: str) -> list[RefOrder]:
        """Resting orders of a side, best first."""
        mine = [o for o in self.resting if o.side == side]
        if side == BUY:
            return sorted(mine, key=lambda o: (-o.price, o.arrival))
        return sorted(mine, key=lambda o: (o.price, o.arrival))

    def take_off(self, o: RefOrder, ts: int, reason: str) -> None:
        self.resting.remove(o)
        self.emit("cancelled", ts, o.id, o.account, o.side, o.price, o.qty, reason, True)

    def drop(self, o: RefOrder, ts: int, reason: str) -> None:
        self.emit("cancelled", ts, o.id, o.account, o.side, o.price, o.qty, reason, False)
        o.qty = 0

    def expire(self, ts: int) -> None:
        due = [o for o in self.resting if o.tif == "GTD" and o.expire_ts <= ts]
        for o in sorted(due, key=lambda o: (o.expire_ts, o.id)):
            self.take_off(o, ts, "EXPIRED")

    def reject(self, ts, oid, account, side, qty, new_oid, why) -> list[tuple]:
        self.events.append(("rejected", None, ts, oid, account, side, qty, new_oid, why))
        return self.flush()

    def flush(self) -> list[tuple]:
        out, self.events = self.events, []
        return out

    # -- commands ------------------------------------------------------------------------------
    def place(
        self,
        ts,
        oid,
        account,
        side,
        price,
        qty,
        tif="GTC",
        expire_ts=None,
        post_only=False,
        stp="NONE",
        budget=None,
        lot=1,
    ) -> list[tuple]:
        self.expire(ts)
        why = None
        if self.find(oid, None):
            why = "duplicate order id"
        elif qty <= 0:
            why = "quantity must be positive"
        elif price is not None and price <= 0:
            why = "price must be positive"
        elif lot <= 0:
            why = "lot must be positive"
        elif budget is not None and budget < 0:
            why = "budget must not be negative"
        elif tif == "GTD" and expire_ts is None:
            why = "GTD order needs expire_ts"
        if why:
            release = None if why == "duplicate order id" else qty
            return self.reject(ts, oid, account, side, release, None, why)
        o = RefOrder(oid, account, side, price, qty, tif, expire_ts, post_only, stp)
        self.enter(o, ts, budget, lot)
        return self.flush()

    def cancel(self, ts, oid, account=None) -> list[tuple]:
        self.expire(ts)
        o = self.find(oid, account)
        if o is None:
            return self.reject(ts, oid, account, None, None, None, "unknown order")
        self.take_off(o, ts, "USER")
        return self.flush()

    def reduce(self, ts, oid, account, qty) -> list[tuple]:
        self.expire(ts)
        o = self.find(oid, account)
        if o is None:
            return self.reject(ts, oid, account, None, None, None, "unknown order")
        if qty <= 0:
            return self.reject(ts, oid, account, None, None, None, "quantity must be positive")
        if qty >= o.qty:
            self.take_off(o, ts, "USER")
        else:
            o.qty -= qty
            self.emit("reduced", ts, o.id, o.account, o.side, o.price, qty, o.qty, True)
        return self.flush()

    def replace(self, ts, oid, account, new_oid, price, qty) -> list[tuple]:
        self.expire(ts)
        o = self.find(oid, account)
        why = None
        if o is None:
            why = "unknown order"
        elif qty <= 0:
            why = "quantity must be positive"
        elif price <= 0:
            why = "price must be positive"
        elif self.find(new_oid, None):
            why = "duplicate order id"
        if why:
            return self.reject(ts, oid, account, None, None, new_oid, why)
        self.take_off(o, ts, "REPLACED")
        new = RefOrder(
            new_oid, o.account, o.side, price, qty, o.tif, o.expire_ts, o.post_only, o.stp
        )
        self.enter(new, ts, None, 1)
        return self.flush()

    # -- an arriving order ---------------------------------------------------------------------
    def crosses(self, o: RefOrder, maker: RefOrder) -> bool:
        if o.price is None:
            return True
        return maker.price <= o.price if o.side == BUY else maker.price >= o.price

    def opposite(self, o: RefOrder) -> list[RefOrder]:
        return self.side(SELL if o.side == BUY else BUY)

    def enter(self, o: RefOrder, ts: int, budget, lot) -> None:
        if o.side != BUY or o.price is not None:
            budget = None
        makers = self.opposite(o)
        would_take = bool(makers) and self.crosses(o, makers[0])
        if o.post_only and (o.price is None or would_take):
            return self.drop(o, ts, "POST_ONLY")
        if o.tif == "GTD" and o.expire_ts <= ts:
            return self.drop(o, ts, "EXPIRED")
        if o.tif == "FOK" and not self.fok_fills(o, ts, budget, lot):
            return self.drop(o, ts, "FOK_UNFILLABLE")
        self.match(o, ts, budget, lot)
        if not o.qty:
            return None
        if o.price is None or o.tif in ("IOC", "FOK"):
            return self.drop(o, ts, "IOC_REMAINDER")
        self.arrivals += 1
        o.arrival = self.arrivals
        self.resting.append(o)
        self.emit("rested", ts, o.id, o.account, o.side, o.price, o.qty)
        return None

    def fok_fills(self, o: RefOrder, ts: int, budget, lot) -> bool:
        trial = copy.deepcopy(self)
        probe = copy.deepcopy(o)
        probe.tif = "IOC"
        trial.events = []
        trial.match(probe, ts, budget, lot)
        traded = sum(e[4] for e in trial.events if e[0] == "trade")
        return traded == o.qty

    def match(self, o: RefOrder, ts: int, budget, lot) -> None:
        while o.qty:
            makers = self.opposite(o)
            if not makers or not self.crosses(o, makers[0]):
                return
            m = makers[0]
            if m.account == o.account and o.stp != "NONE":
                self.prevent(o, m, ts)
                continue
            q = min(o.qty, m.qty)
            if budget is not None:
                if q * m.price > budget:
                    q = (budget // m.price) // lot * lot
                    if q <= 0:
                        return
                budget -= q * m.price
            m.qty -= q
            o.qty -= q
            self.emit(
                "trade", ts, m.price, q, m.id, m.account, o.id, o.account, o.side, m.qty, o.qty
            )
            if m.qty == 0:
                self.resting.remove(m)

    def prevent(self, o: RefOrder, m: RefOrder, ts: int) -> None:
        if o.stp == "CANCEL_OLDEST":
            self.take_off(m, ts, "SELF_TRADE")
        elif o.stp == "CANCEL_NEWEST":
            self.drop(o, ts, "SELF_TRADE")
        elif o.stp == "CANCEL_BOTH":
            self.take_off(m, ts, "SELF_TRADE")
            self.drop(o, ts, "SELF_TRADE")
        else:
            small = min(m.qty, o.qty)
            if m.qty == small:
                self.take_off(m, ts, "SELF_TRADE")
            else:
                m.qty -= small
                self.emit("reduced", ts, m.id, m.account, m.side, m.price, small, m.qty, True)
            if o.qty == small:
                self.drop(o, ts, "SELF_TRADE")
            else:
                o.qty -= small
                # never on the book: no level changes (market.OrderReduced rested false)
                self.emit("reduced", ts, o.id, o.account, o.side, o.price or 0, small, o.qty, False)

    # -- the book, in the fast book's canonical form -------------------------------------------
    def state(self) -> dict:
        orders = [
            [o.id, o.account, o.side, o.price, o.qty, o.tif, o.expire_ts, o.post_only, o.stp]
            for side in (BUY, SELL)
            for o in self.side(side)
        ]
        return {"seq": self.seq, "orders": orders}


# -- random streams and the fast book's invariants, for the differential tests ---------------


ACCOUNTS = ("a", "b", "c")
TIFS = ("GTC", "GTC", "GTC", "IOC", "FOK", "GTD")
STPS = ("NONE", "NONE", "CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH", "DECREMENT_AND_CANCEL")


def _place(oid, account, side, price, qty, tif, expire_in, post_only, stp, budget, lot):
    # ts is filled in by the stream; expire_ts is relative to it until then
    return ["place", 0, oid, account, side, price, qty, tif, expire_in, post_only, stp, budget, lot]


place_st = st.builds(
    _place,
    st.integers(1, 60),
    st.sampled_from(ACCOUNTS),
    st.sampled_from((BUY, SELL)),
    st.one_of(st.integers(95, 105), st.integers(95, 105), st.integers(95, 105), st.none()),
    st.integers(1, 20),
    st.sampled_from(TIFS),
    st.integers(0, 40),
    st.sampled_from((False, False, False, True)),
    st.sampled_from(STPS),
    st.one_of(st.none(), st.integers(0, 3000)),
    st.integers(1, 3),
)
cancel_st = st.builds(lambda oid, acc: ["cancel", 0, oid, acc], st.integers(1, 60), st.none())
reduce_st = st.builds(
    lambda oid, qty: ["reduce", 0, oid, None, qty], st.integers(1, 60), st.integers(0, 12)
)
replace_st = st.builds(
    lambda oid, new, price, qty: ["replace", 0, oid, None, new, price, qty],
    st.integers(1, 60),
    st.integers(1, 60),
    st.integers(95, 105),
    st.integers(0, 20),
)
command_st = st.one_of(place_st, place_st, place_st, cancel_st, reduce_st, replace_st)
stream_st = st.lists(st.tuples(command_st, st.integers(0, 5)), min_size=40, max_size=300)


def timed(commands: list[tuple[list, int]]) -> list[tuple]:
    """Give each command a rising ts; a place's expire_ts becomes ts + its relative expiry."""
    out, ts = [], 1000
    for command, step in commands:
        ts += step
        command = list(command)
        command[1] = ts
        if command[0] == "place":
            command[8] = ts + command[8] if command[7] == "GTD" else None
        out.append(tuple(command))
    return out


def random_stream(seed: int, n: int, deep: bool = False) -> list[tuple]:
    """A long seeded stream over the same space as stream_st (ids keep rising).

    deep: buys mostly below 100 and sells mostly above, so the book grows to hundreds of orders
    over dozens of levels (stale heap keys, dead orders piling up in levels, compaction)."""
    rng = random.Random(seed)
    out, ts, next_id = [], 1000, 1
    for _ in range(n):
        ts += rng.randint(0, 5)
        roll = rng.random()
        known = rng.randint(max(1, next_id - (400 if deep else 40)), next_id)
        if roll < 0.6:
            tif = "GTC" if deep and rng.random() < 0.7 else rng.choice(TIFS)
            side = rng.choice((BUY, SELL))
            if deep:
                low, high = (70, 101) if side == BUY else (99, 130)
            else:
                low, high = 95, 105
            price = None if rng.random() < 0.08 else rng.randint(low, high)
            budget = rng.choice((None, rng.randint(0, 3000))) if price is None else None
            out.append(
                (
                    "place",
                    ts,
                    next_id,
                    rng.choice(ACCOUNTS),
                    side,
                    price,
                    rng.randint(1, 20),
                    tif,
                    ts + rng.randint(0, 40) if tif == "GTD" else None,
                    rng.random() < 0.1,
                    rng.choice(STPS),
                    budget,
                    rng.randint(1, 3),
                )
            )
            next_id += 1
        elif roll < 0.8:
            out.append(("cancel", ts, known, None))
        elif roll < 0.9:
            out.append(("reduce", ts, known, None, rng.randint(0, 12)))
        else:
            out.append(
                ("replace", ts, known, None, next_id, rng.randint(95, 105), rng.randint(0, 20))
            )
            next_id += 1
    return out


def run(book, command: tuple) -> list[tuple]:
    return getattr(book, command[0])(*command[1:])


def check_invariants(book: Book) -> None:
    """The fast book's internal invariants; raises AssertionError on the first broken one."""
    seen = {}
    for side, levels, keys, sign in (
        (BUY, book.bids, book.bid_keys, -1),
        (SELL, book.asks, book.ask_keys, 1),
    ):
        for price, level in levels.items():
            live = [o for o in level if o[QTY]]
            assert live, f"empty level {side} {price}"
            assert level.live == len(live), f"live count {side} {price}"
            for o in live:
                assert o[QTY] > 0 and o[PRICE] == price and o[SIDE] == side
                assert book.orders.get(o[OID]) is o, f"index lost order {o[OID]}"
                assert o[OID] not in seen, f"order {o[OID]} twice"
                seen[o[OID]] = o
        assert all(o[QTY] >= 0 for level in levels.values() for o in level)
        assert set(levels) <= {sign * k for k in keys}, f"{side} level missing from heap"
        if levels:
            best = max(levels) if side == BUY else min(levels)
            assert keys[0] * sign == best, f"{side} heap top {keys[0]} is not the best {best}"
    assert len(seen) == len(book.orders), "index holds orders that are not on the book"
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"
