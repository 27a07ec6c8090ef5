"""An offline exchange for ledger tests and benchmarks: ledger partitions + a toy matcher.

``ToyMatcher`` is a naive price-time matcher standing in for services/matcher: it answers the
ledger's ``match.commands`` with the settlements the real one writes (fills per side at the resting
order's price, closes, reductions, refusals). ``Exchange`` routes gateway commands to the ledger
partition of their account, queues what the ledger forwards, and delivers settlements back when
told to, so tests choose the interleaving. ``random_session`` drives it with a seeded mix of
commands. ``Exchange.log`` is each partition's input in order, as the real topic would hold it.
"""

from __future__ import annotations

import random
import zlib
from collections import deque

from sortedcontainers import SortedList

from . import records as r
from .decisions import MATCH_COMMANDS, ORDER_ACCEPTED, Decision, as_record
from .state import Ledger

BUY, SELL = "BUY", "SELL"


class Resting:
    __slots__ = (
        "account",
        "arrival",
        "budget",
        "buy",
        "id",
        "lot",
        "post_only",
        "price",
        "remaining",
        "symbol",
        "tif",
    )

    def __init__(self, rec: dict, symbol: str, arrival: int) -> None:
        self.id, self.account, self.symbol = rec["order_id"], rec["account"], symbol
        self.buy, self.price, self.remaining = rec["side"] == BUY, rec["price"], rec["qty"]
        self.tif, self.post_only, self.lot = rec.get("tif"), rec.get("post_only"), rec.get("lot", 1)
        self.budget, self.arrival = rec.get("budget"), arrival

    @property
    def side(self) -> str:
        return BUY if self.buy else SELL

    def sort_key(self) -> tuple[int, int]:
        return (-self.price if self.buy else self.price, self.arrival)


class ToyMatcher:
    def __init__(self) -> None:
        self.resting: dict[int, Resting] = {}
        self.books: dict[tuple[str, bool], SortedList] = {}  # (symbol, buy) -> best first
        self.seq: dict[str, int] = {}
        self.arrivals = 0

    def apply(self, name: str, rec: dict) -> list[r.Command]:
        kind = name.rsplit(".", 1)[1]
        env, symbol = rec["envelope"], rec["envelope"]["key"]
        if kind == "PlaceOrder":
            return self._take(env, self._new(rec, symbol))
        order = self.resting.get(rec["order_id"])
        if order is None:
            return [
                r.match_rejected(
                    at(env, rec["account"]),
                    rec["order_id"],
                    symbol,
                    "unknown order",
                    rec.get("new_order_id"),
                )
            ]
        if kind == "CancelOrder":
            return [self.close(env, order, "USER")]
        if kind == "ReduceOrder":
            return [self._reduce(env, order, rec["qty"])]
        replaced = self.close(env, order, "REPLACED")
        new = {
            "order_id": rec["new_order_id"],
            "account": order.account,
            "side": order.side,
            "price": rec["price"],
            "qty": rec["qty"],
            "tif": order.tif,
            "lot": order.lot,
            "post_only": order.post_only,
        }
        return [replaced, *self._take(env, self._new(new, symbol))]

    def _new(self, rec: dict, symbol: str) -> Resting:
        self.arrivals += 1
        return Resting(rec, symbol, self.arrivals)

    def _next_seq(self, symbol: str) -> int:
        self.seq[symbol] = self.seq.get(symbol, 0) + 1
        return self.seq[symbol]

    def close(self, env: dict, order: Resting, reason: str) -> r.Command:
        if order.id in self.resting:
            del self.resting[order.id]
            self.books[order.symbol, order.buy].remove((*order.sort_key(), order))
        return r.order_closed(
            at(env, order.account),
            order.id,
            order.symbol,
            order.side,
            order.remaining,
            reason,
            self._next_seq(order.symbol),
        )

    def _reduce(self, env: dict, order: Resting, qty: int) -> r.Command:
        if qty > order.remaining:
            return self.close(env, order, "USER")
        order.remaining -= qty
        if order.remaining == 0:
            del self.resting[order.id]
            self.books[order.symbol, order.buy].remove((*order.sort_key(), order))
        return r.order_reduced(
            at(env, order.account),
            order.id,
            order.symbol,
            order.side,
            qty,
            order.remaining,
            self._next_seq(order.symbol),
        )

    def _take(self, env: dict, taker: Resting) -> list[r.Command]:
        book = self.books.setdefault((taker.symbol, not taker.buy), SortedList())
        if taker.post_only and book and crosses(taker, book[0][2]):
            return [self.close(env, taker, "POST_ONLY")]
        if taker.tif == "FOK" and fillable(taker, book) < taker.remaining:
            return [self.close(env, taker, "FOK_UNFILLABLE")]
        out: list[r.Command] = []
        while taker.remaining and book and crosses(taker, book[0][2]):
            maker = book[0][2]
            qty = min(taker.remaining, maker.remaining, affordable(taker, maker.price))
            if qty <= 0:
                break
            self._trade(env, maker, taker, qty, out)
            if maker.remaining == 0:
                del self.resting[maker.id]
                book.pop(0)
        if taker.remaining:
            if taker.price is not None and taker.tif in ("GTC", "GTD"):
                self.resting[taker.id] = taker
                own = self.books.setdefault((taker.symbol, taker.buy), SortedList())
                own.add((*taker.sort_key(), taker))
            else:
                out.append(self.close(env, taker, "IOC_REMAINDER"))
        return out

    def _trade(self, env: dict, maker: Resting, taker: Resting, qty: int, out: list) -> None:
        price, seq = maker.price, self._next_seq(taker.symbol)
        maker.remaining -= qty
        taker.remaining -= qty
        if taker.budget is not None:
            taker.budget -= price * qty
        for order, role in ((maker, "MAKER"), (taker, "TAKER")):
            out.append(
                r.fill(
                    at(env, order.account),
                    order.id,
                    order.symbol,
                    order.side,
                    price,
                    qty,
                    order.remaining,
                    seq,
                    role,
                )
            )


def at(env: dict, account: str) -> dict:
    """The envelope of the input record, keyed for the account a settlement goes to."""
    return {**env, "key": account}


def crosses(taker: Resting, maker: Resting) -> bool:
    if taker.price is None:
        return True
    return maker.price <= taker.price if taker.buy else maker.price >= taker.price


def affordable(taker: Resting, price: int) -> int:
    """How much a budget-capped market buy can still pay for at price, in whole lots."""
    if taker.budget is None:
        return taker.remaining
    return taker.budget // price // taker.lot * taker.lot


def fillable(taker: Resting, book: SortedList) -> int:
    total, budget = 0, taker.budget
    for _, _, maker in book:
        if total >= taker.remaining or not crosses(taker, maker):
            break
        qty = min(taker.remaining - total, maker.remaining)
        if budget is not None:
            qty = min(qty, budget // maker.price // taker.lot * taker.lot)
            budget -= qty * maker.price
        total += qty
    return total


class Exchange:
    """P ledger partitions and a toy matcher, connected by queues the caller drains."""

    def __init__(self, partitions: int = 1, keep_decisions: bool = True) -> None:
        self.partitions = partitions
        self.ledgers = [Ledger(p, partitions) for p in range(partitions)]
        self.matcher = ToyMatcher()
        self.to_match: deque[r.Command] = deque()
        self.to_settle: list[deque[r.Command]] = [deque() for _ in range(partitions)]
        self.log: list[tuple[int, str, dict]] = []  # (partition, name, record), as applied
        self.decisions: list[list[Decision]] = [[] for _ in range(partitions)]
        self.keep_decisions = keep_decisions
        self.recent_orders: deque[tuple[str, int]] = deque(maxlen=200)  # (account, order id)
        self.clock = 1_700_000_000_000_000
        self.commands = 0

    def partition_of(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.partitions

    def envelope(self, key: str) -> dict:
        self.clock += 1000
        self.commands += 1
        return r.envelope(f"c{self.commands}", key, self.clock, "sim")

    def submit(self, command: r.Command) -> list[Decision]:
        """A gateway command: applied at once (CreateSymbol on every partition)."""
        name, rec = command
        if name == r.L + "CreateSymbol":
            return [d for p in range(self.partitions) for d in self._apply(p, name, rec)]
        return self._apply(self.partition_of(rec["envelope"]["key"]), name, rec)

    def _apply(self, partition: int, name: str, rec: dict) -> list[Decision]:
        self.log.append((partition, name, rec))
        out = self.ledgers[partition].apply(name, rec)
        for decision in out:
            if decision[0] == MATCH_COMMANDS:
                self.to_match.append((decision[2], as_record(decision)))
            elif decision[2] == ORDER_ACCEPTED:
                self.recent_orders.append((decision[1], decision[3][1]))
        if self.keep_decisions:
            self.decisions[partition].extend(out)
        return out

    def match_next(self) -> bool:
        """The matcher takes the oldest forwarded command; its settlements queue up."""
        if not self.to_match:
            return False
        for name, rec in self.matcher.apply(*self.to_match.popleft()):
            self.to_settle[self.partition_of(rec["envelope"]["key"])].append((name, rec))
        return True

    def expire(self, order_id: int) -> bool:
        """The matcher expires a resting order (as a GTD expiry would)."""
        order = self.matcher.resting.get(order_id)
        if order is None:
            return False
        env = r.envelope(f"expire-{order_id}", order.account, self.clock, "")
        name, rec = self.matcher.close(env, order, "EXPIRED")
        self.to_settle[self.partition_of(order.account)].append((name, rec))
        return True

    def settle_next(self, partition: int) -> bool:
        if not self.to_settle[partition]:
            return False
        self._apply(partition, *self.to_settle[partition].popleft())
        return True

    def drain(self) -> None:
        while self.match_next() or any(self.settle_next(p) for p in range(self.partitions)):
            pass

    def quiet(self) -> bool:
        return not self.to_match and not any(self.to_settle)


TICK, LOT, MID = 100, 100, 1_000_000  # 0.01, 1 share, 100.00


def random_session(
    ex: Exchange, rng: random.Random, records: int, accounts: int = 40, symbols: int = 3
) -> None:
    """Drive ex with a seeded mix of commands until its log holds about `records` records."""
    names = [f"S{i}" for i in range(symbols)]
    people = [f"a{i}" for i in range(accounts)]
    for symbol in names:
        ex.submit(r.create_symbol(ex.envelope(symbol), TICK, LOT))
    for person in people:
        ex.submit(r.create_account(ex.envelope(person), rng.randrange(10**10, 10**12)))
        for symbol in names:
            ex.submit(r.issue_shares(ex.envelope(person), symbol, rng.randrange(1, 500) * LOT))
    while len(ex.log) < records:
        random_command(ex, rng, people, names)
        # the matcher and the settlements lag the gateway by a few records, as in the log
        while len(ex.to_match) > rng.randrange(4):
            ex.match_next()
        for p in range(ex.partitions):
            while len(ex.to_settle[p]) > rng.randrange(6):
                ex.settle_next(p)
    ex.drain()


def random_command(ex: Exchange, rng: random.Random, people: list[str], names: list[str]) -> None:
    person, symbol = rng.choice(people), rng.choice(names)
    env, roll = ex.envelope(person), rng.random()
    if roll < 0.08:
        ex.submit(r.deposit(env, rng.randrange(1, 10**9)))
    elif roll < 0.11:
        ex.submit(r.withdraw(env, rng.randrange(1, 10**9)))
    elif roll < 0.12:
        ex.submit(r.issue_shares(env, symbol, rng.randrange(1, 50) * LOT))
    elif roll < 0.72:
        ex.submit(random_order(env, rng, symbol))
    elif ex.recent_orders and roll < 0.99:
        owner, order_id = rng.choice(ex.recent_orders)
        if rng.random() < 0.9:  # mostly the owner's own order
            env = ex.envelope(owner)
        if roll < 0.93:
            ex.submit(r.cancel_order(env, order_id))
        elif roll < 0.96:
            ex.submit(r.reduce_order(env, order_id, rng.randrange(1, 4) * LOT))
        else:
            price = MID + rng.randrange(-15, 16) * TICK
            ex.submit(r.replace_order(env, order_id, price, rng.randrange(1, 10) * LOT))
    elif ex.recent_orders:
        ex.expire(rng.choice(ex.recent_orders)[1])


def random_order(env: dict, rng: random.Random, symbol: str) -> r.Command:
    side, qty = rng.choice((BUY, SELL)), rng.randrange(1, 20) * LOT
    away = rng.randrange(-4, 20) * TICK  # mostly passive, some crossing the spread
    price, kind = (MID - away if side == BUY else MID + away), rng.random()
    extra: dict = {}
    if rng.random() < 0.3:
        extra["client_order_id"] = f"o{rng.randrange(10**6)}"
    if kind < 0.08:  # market order
        price, extra["tif"] = None, "IOC"
        if side == BUY:
            extra["budget"] = rng.randrange(1, 20) * LOT * MID
    elif kind < 0.18:
        extra["tif"] = rng.choice(("IOC", "FOK"))
    elif kind < 0.23:
        extra["post_only"] = True
    elif kind < 0.26:
        extra["tif"], extra["expire_ts"] = "GTD", env["ts"] + 10**9
    return r.place_order(env, symbol, side, qty, price, **extra)
