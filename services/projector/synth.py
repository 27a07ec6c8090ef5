"""Synthetic, self-consistent account.events + market.events histories for tests and the bench.

A deliberately small exchange in one process that writes the decisions a correct ledger and
matcher would write under docs/records.md (holds, fills at the resting price, the buyer's refund
below its limit, releases on close), with balances after every decision. It is an oracle for the
projector's tests, not a second ledger: it has no partitions, snapshots or idempotency.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Producer
from sortedcontainers import SortedDict

from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import producer_config

from .rows import ACCOUNT, MARKET, Event

Produced = tuple[str, str, str, dict]  # (stream, key, record fullname, record)


@dataclass
class Order:
    order_id: int
    account: str
    symbol: str
    side: str
    price: int | None
    remaining: int
    hold: int
    resting: bool = False


class Exchange:
    def __init__(self, start_ts: int = 1_700_000_000_000_000) -> None:
        self.ts = start_ts
        self.events: list[Produced] = []
        self.cash: dict[str, list[int]] = {}  # account -> [available, held]
        self.shares: dict[tuple[str, str], list[int]] = {}  # (account, symbol) -> [avail, held]
        self.orders: dict[int, Order] = {}  # open orders
        self.books: dict[str, dict[str, SortedDict]] = {}  # symbol -> side -> price -> deque
        self.seq: dict[str, int] = {}
        self.next_order = 1
        self.commands = 0
        self._env: dict = {}

    # -- plumbing ---------------------------------------------------------------------------------
    def _command(self) -> None:
        """A new gateway command: its id and time stamp every decision it causes."""
        self.commands += 1
        self.ts += 1000
        self._env = {"command_id": f"c{self.commands}", "ts": self.ts, "reply_to": ""}

    def _emit(self, stream: str, key: str, name: str, **fields: object) -> None:
        record = {"envelope": {**self._env, "key": key}, **fields}
        self.events.append((stream, key, f"marketlog.{stream}.{name}", record))

    def _public(self, symbol: str, name: str, **fields: object) -> None:
        self.seq[symbol] += 1
        self._emit(MARKET, symbol, name, seq=self.seq[symbol], **fields)

    def _after(self, account: str, symbol: str) -> dict:
        cash = self.cash[account]
        shares = self.shares.setdefault((account, symbol), [0, 0])
        return dict(
            cash_available=cash[0],
            cash_held=cash[1],
            shares_available=shares[0],
            shares_held=shares[1],
        )

    def _reject(self, account: str, command: str, reason: str, order_id: int | None = None):
        self._emit(ACCOUNT, account, "CommandRejected", command=command, reason=reason,
                   order_id=order_id, duplicate=False)  # fmt: skip

    # -- accounts and symbols --------------------------------------------------------------------
    def create_account(self, account: str, balance: int) -> None:
        self._command()
        if account in self.cash:
            return self._reject(account, "CreateAccount", "account exists")
        self.cash[account] = [balance, 0]
        key_hash = hashlib.sha256(f"key-{account}".encode()).hexdigest()
        self._emit(ACCOUNT, account, "AccountCreated", balance=balance, api_key_hash=key_hash)

    def deposit(self, account: str, amount: int) -> None:
        self._command()
        self.cash[account][0] += amount
        self._emit(ACCOUNT, account, "CashDeposited", amount=amount,
                   cash_available=self.cash[account][0])  # fmt: skip

    def withdraw(self, account: str, amount: int) -> None:
        self._command()
        if self.cash[account][0] < amount:
            return self._reject(account, "Withdraw", "insufficient funds")
        self.cash[account][0] -= amount
        self._emit(ACCOUNT, account, "CashWithdrawn", amount=amount,
                   cash_available=self.cash[account][0])  # fmt: skip

    def create_symbol(self, symbol: str, tick: int = 100, lot: int = 100) -> None:
        self._command()
        created = symbol not in self.books
        if created:
            self.books[symbol] = {"BUY": SortedDict(), "SELL": SortedDict()}
            self.seq[symbol] = 0
        self._emit(ACCOUNT, symbol, "SymbolCreated", tick=tick, lot=lot, created=created)

    def issue(self, account: str, symbol: str, qty: int) -> None:
        self._command()
        shares = self.shares.setdefault((account, symbol), [0, 0])
        shares[0] += qty
        self._emit(ACCOUNT, account, "SharesIssued", symbol=symbol, qty=qty,
                   shares_available=shares[0])  # fmt: skip

    # -- orders ----------------------------------------------------------------------------------
    def place(
        self,
        account: str,
        symbol: str,
        side: str,
        qty: int,
        price: int | None = None,
        *,
        budget: int | None = None,
        tif: str = "GTC",
        client_order_id: str = "",
    ) -> int | None:
        """Hold, accept, match, then rest or close the remainder. Returns the order id."""
        self._command()
        hold = qty if side == "SELL" else (budget if price is None else price * qty)
        store = self.shares.setdefault((account, symbol), [0, 0]) if side == "SELL" else None
        funds = store if store is not None else self.cash[account]
        if hold is None or funds[0] < hold:
            self._reject(account, "PlaceOrder", "insufficient funds or shares")
            return None
        funds[0] -= hold
        funds[1] += hold
        order = Order(self.next_order, account, symbol, side, price, qty, hold)
        self.next_order += 1
        self.orders[order.order_id] = order
        self._emit(ACCOUNT, account, "OrderAccepted", order_id=order.order_id,
                   client_order_id=client_order_id, symbol=symbol, side=side, price=price,
                   qty=qty, tif=tif, expire_ts=None, post_only=False, stp="NONE",
                   budget=budget, hold=hold, replaces=None, duplicate=False,
                   **self._after(account, symbol))  # fmt: skip
        self._match(order)
        if order.remaining and price is not None and tif == "GTC":
            order.resting = True
            self.books[symbol][side].setdefault(price, deque()).append(order.order_id)
            self._public(symbol, "OrderRested", order_id=order.order_id, side=side,
                         price=price, qty=order.remaining)  # fmt: skip
        elif order.remaining:
            self._close(order, "IOC_REMAINDER")
        return order.order_id

    def _best(self, symbol: str, side: str) -> tuple[int, deque] | None:
        levels = self.books[symbol][side]
        if not levels:
            return None
        return levels.peekitem(-1 if side == "BUY" else 0)

    def _match(self, taker: Order) -> None:
        other = "SELL" if taker.side == "BUY" else "BUY"
        while taker.remaining:
            best = self._best(taker.symbol, other)
            if best is None:
                return
            price, queue = best
            if taker.price is not None and (
                price > taker.price if taker.side == "BUY" else price < taker.price
            ):
                return
            maker = self.orders[queue[0]]
            qty = min(taker.remaining, maker.remaining)
            if taker.side == "BUY" and taker.price is None:  # market buy: within its budget
                qty = min(qty, taker.hold // price)
                if qty == 0:
                    return
            maker.remaining -= qty
            taker.remaining -= qty
            self._public(taker.symbol, "Trade", price=price, qty=qty,
                         maker_order_id=maker.order_id, taker_order_id=taker.order_id,
                         taker_side=taker.side, maker_remaining=maker.remaining,
                         taker_remaining=taker.remaining)  # fmt: skip
            seq = self.seq[taker.symbol]
            self._fill(maker, price, qty, seq, "MAKER")
            self._fill(taker, price, qty, seq, "TAKER")
            if not maker.remaining:
                queue.popleft()
                if not queue:
                    del self.books[taker.symbol][other][price]

    def _fill(self, order: Order, price: int, qty: int, seq: int, role: str) -> None:
        cash = self.cash[order.account]
        shares = self.shares.setdefault((order.account, order.symbol), [0, 0])
        if order.side == "BUY":
            taken = price * qty if order.price is None else order.price * qty
            order.hold -= taken
            cash[1] -= taken
            cash[0] += taken - price * qty  # the refund below the limit
            shares[0] += qty
        else:
            order.hold -= qty
            shares[1] -= qty
            cash[0] += price * qty
        if not order.remaining:  # filled: whatever it still holds goes back
            (cash if order.side == "BUY" else shares)[0] += order.hold
            (cash if order.side == "BUY" else shares)[1] -= order.hold
            order.hold = 0
            del self.orders[order.order_id]
        self._emit(ACCOUNT, order.account, "OrderFilled", order_id=order.order_id,
                   symbol=order.symbol, side=order.side, price=price, qty=qty,
                   remaining=order.remaining, seq=seq, role=role,
                   **self._after(order.account, order.symbol))  # fmt: skip

    def _close(self, order: Order, reason: str) -> None:
        """The open part leaves (cancel, IOC remainder): its hold goes back."""
        released, qty = order.hold, order.remaining
        key = (order.account, order.symbol)
        funds = self.cash[order.account] if order.side == "BUY" else self.shares[key]
        funds[0] += released
        funds[1] -= released
        del self.orders[order.order_id]
        self._public(order.symbol, "OrderCancelled", order_id=order.order_id, side=order.side,
                     price=order.price, qty=qty, reason=reason, rested=order.resting)  # fmt: skip
        if order.resting:
            queue = self.books[order.symbol][order.side][order.price]
            queue.remove(order.order_id)
            if not queue:
                del self.books[order.symbol][order.side][order.price]
        self._emit(ACCOUNT, order.account, "OrderClosed", order_id=order.order_id,
                   symbol=order.symbol, side=order.side, qty=qty, reason=reason,
                   released=released, **self._after(*key))  # fmt: skip

    def cancel(self, account: str, order_id: int) -> None:
        self._command()
        order = self.orders.get(order_id)
        if order is None or order.account != account:
            return self._reject(account, "CancelOrder", "no such open order", order_id)
        self._close(order, "USER")

    def reduce(self, account: str, order_id: int, qty: int) -> None:
        """Take qty off a resting limit order; it keeps its place."""
        self._command()
        order = self.orders.get(order_id)
        if order is None or order.account != account or not order.resting:
            return self._reject(account, "ReduceOrder", "no such resting order", order_id)
        if qty >= order.remaining:
            return self._close(order, "USER")
        order.remaining -= qty
        released = qty if order.side == "SELL" else order.price * qty
        order.hold -= released
        funds = self.cash[account] if order.side == "BUY" else self.shares[(account, order.symbol)]
        funds[0] += released
        funds[1] -= released
        self._public(order.symbol, "OrderReduced", order_id=order_id, side=order.side,
                     price=order.price, qty=qty, remaining=order.remaining)  # fmt: skip
        self._emit(ACCOUNT, account, "OrderReduced", order_id=order_id, symbol=order.symbol,
                   side=order.side, qty=qty, remaining=order.remaining, released=released,
                   **self._after(account, order.symbol))  # fmt: skip


# -- a random but consistent history --------------------------------------------------------------
def random_history(events: int, seed: int = 1, accounts: int = 100, symbols: int = 8) -> Exchange:
    """At least `events` events of a market that trades, cancels, deposits and withdraws."""
    ex = Exchange()
    found = [
        e for chunk in history_chunks(events, seed, accounts, symbols, exchange=ex) for e in chunk
    ]
    ex.events = found
    return ex


def history_chunks(
    events: int,
    seed: int = 1,
    accounts: int = 100,
    symbols: int = 8,
    *,
    chunk: int = 50_000,
    exchange: Exchange | None = None,
) -> Iterator[list[Produced]]:
    """The events of `random_history`, handed out in lists of about `chunk` (memory stays flat)."""
    rng = random.Random(seed)
    ex = Exchange() if exchange is None else exchange
    names = [f"S{i}" for i in range(symbols)]
    owners = [f"{1000 + i}" for i in range(accounts)]
    mids = dict.fromkeys(names, 1_000_000)  # 100.0000 in price units
    for symbol in names:
        ex.create_symbol(symbol)
    holdings: dict[str, list[str]] = {}  # what each account was issued: what it can sell
    for account in owners:
        ex.create_account(account, rng.randrange(50_000, 500_000) * 1_000_000)
        holdings[account] = rng.sample(names, k=max(1, min(symbols // 2, 4)))
        for symbol in holdings[account]:
            ex.issue(account, symbol, rng.randrange(100, 2_000) * 100)
    placed: list[tuple[str, int]] = []
    made = 0
    while made < events:
        if len(ex.events) >= min(chunk, events - made):
            made += len(ex.events)
            yield ex.events
            ex.events = []
            continue
        _random_step(ex, rng, owners, names, mids, placed, holdings)
    if ex.events:
        yield ex.events
        ex.events = []


def _random_step(ex: Exchange, rng: random.Random, owners, names, mids, placed, holdings) -> None:
    """One gateway command: mostly limit orders near a drifting mid price, then cancels, …"""
    account, symbol, roll = rng.choice(owners), rng.choice(names), rng.random()
    if roll < 0.62:
        side = rng.choice(("BUY", "SELL"))
        if side == "SELL":  # mostly what it holds; now and then a sale it cannot cover
            symbol = rng.choice(holdings[account]) if roll > 0.02 else symbol
        mids[symbol] = max(10_000, mids[symbol] + rng.randrange(-2, 3) * 100)
        price = mids[symbol] + rng.randrange(-5, 6) * 100
        tif = "IOC" if roll < 0.05 else "GTC"
        qty = rng.randrange(1, 50) * 100
        oid = ex.place(account, symbol, side, qty, price, tif=tif, client_order_id=f"x{roll}")
        if oid is not None:
            placed.append((account, oid))
    elif roll < 0.66:
        qty = rng.randrange(1, 20) * 100
        ex.place(account, symbol, "BUY", qty, budget=mids[symbol] * qty * 2)
    elif roll < 0.90 and placed:
        owner, oid = _open_order(ex, rng, placed)
        if roll < 0.85:
            ex.cancel(owner if roll < 0.845 else account, oid)  # now and then not the owner's
        else:
            ex.reduce(owner, oid, rng.randrange(1, 10) * 100)
    elif roll < 0.95:
        ex.deposit(account, rng.randrange(1, 10_000) * 1_000_000)
    elif roll < 0.99:
        ex.withdraw(account, rng.randrange(1, 20_000) * 1_000_000)
    else:
        ex.issue(account, symbol, rng.randrange(1, 100) * 100)


def _open_order(ex: Exchange, rng: random.Random, placed: list) -> tuple[str, int]:
    """A random placed order, preferring open ones (a few tries; filled ones are forgotten)."""
    for _ in range(4):
        i = rng.randrange(len(placed))
        if placed[i][1] in ex.orders or len(placed) == 1:
            return placed[i]
        placed[i] = placed[-1]
        placed.pop()
    return placed[rng.randrange(len(placed))]


def as_events(produced: Iterable[Produced]) -> Iterator[Event]:
    """The history as the projector's Event tuples: one partition per stream, offsets in order."""
    offsets = {ACCOUNT: 0, MARKET: 0}
    for stream, _key, name, record in produced:
        yield Event(stream, 0, offsets[stream], name, record)
        offsets[stream] += 1


def encode(produced: Iterable[Produced], codec: Codec | None = None) -> list[tuple]:
    """(stream, key, bytes) per event, ready to produce."""
    codec = codec or Codec()
    return [(stream, key, codec.encode(name, record)) for stream, key, name, record in produced]


def produce(settings: Settings, encoded: Iterable[tuple], producer: Producer | None = None) -> int:
    """Append pre-encoded events to the settings' account.events / market.events, keyed."""
    own = producer is None
    producer = producer or Producer(producer_config(settings, **{"linger.ms": 20}))
    topics = {ACCOUNT: settings.topic("account.events"), MARKET: settings.topic("market.events")}
    count = 0
    for stream, key, value in encoded:
        while True:
            try:
                producer.produce(topics[stream], value, key)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    if own:
        left = producer.flush(60)
        if left:
            raise RuntimeError(f"{left} events not delivered")
    return count
