"""Consistent account.events + market.events histories, written by the real ledger and matcher.

``Market`` drives a Pipeline (no projector) one readable command at a time — ``create_account``,
``deposit``, ``place``, ``cancel``, … — and lets everything settle after each, so a test knows what
happened when the call returns; ``events`` is every decision since, decoded, in the order it was
appended: ``(stream, key, record name, record)``, stream being ``rows.ACCOUNT`` or ``rows.MARKET``.
What the cores hold (balances, open orders, books) is the oracle a projection is checked against.
``random_history`` and ``history_chunks`` make long seeded histories (trading near a drifting mid,
market buys, cancels, reduces, deposits, withdrawals, issues, some refusals) for the projector's
tests and its benchmark; ``encode`` and ``produce`` put them on Kafka.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator

from confluent_kafka import Producer

from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import producer_config
from services.projector.rows import ACCOUNT, MARKET, Event

from . import records as r
from .log import partition_for
from .pipeline import ACCOUNT_EVENTS, MARKET_EVENTS, Pipeline, codec

Produced = tuple[str, str, str, dict]  # (stream, key, record fullname, record)
STREAMS = {ACCOUNT_EVENTS: ACCOUNT, MARKET_EVENTS: MARKET}
ACCEPTED = "marketlog.account.OrderAccepted"
PLACED = "marketlog.account.OrderPlaced"  # for gateways; the projector skips it


class Market:
    """A whole exchange in memory, one settled command at a time."""

    def __init__(self, partitions: int = 1, start_ts: int = 1_700_000_000_000_000) -> None:
        self.pipeline = Pipeline(partitions, project=False)
        self.ts = start_ts
        self.commands = 0
        self.events: list[Produced] = []
        self._read: dict[str, dict[int, int]] = {ACCOUNT_EVENTS: {}, MARKET_EVENTS: {}}

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(self, command: r.Command) -> list[Produced]:
        """Append a command, let everything settle; the decisions it caused."""
        self.pipeline.submit(*command)
        self.pipeline.drain()
        return self._collect()

    def _env(self, key: str) -> dict:
        self.commands += 1
        self.ts += 1000
        return r.envelope(f"c{self.commands}", key, self.ts)

    def _collect(self) -> list[Produced]:
        """The decisions appended since the last call, in append order, decoded."""
        decode, new = codec().decode, []
        for topic, since in self._read.items():
            for partition, offset, record in self.pipeline.log.in_order(topic, since):
                since[partition] = offset + 1
                name, value = decode(record.value)
                new.append((record.stamp, STREAMS[topic], record.key, name, value))
        produced = [e[1:] for e in sorted(new, key=lambda e: e[0])]
        self.events += produced
        return produced

    def forget(self) -> None:
        """Drop the log records everything has consumed (long histories: memory stays flat)."""
        log, p = self.pipeline.log, self.pipeline.partitions
        for stage in (self.pipeline.ledger, self.pipeline.matcher):
            for partition in range(p):
                log.partition(stage.input, partition).trim(stage.committed[partition])
        for topic, since in self._read.items():
            for partition in range(p):
                log.partition(topic, partition).trim(since.get(partition, 0))

    # -- accounts and symbols ---------------------------------------------------------------------
    def create_account(self, account: str, balance: int) -> None:
        key_hash = hashlib.sha256(f"key-{account}".encode()).hexdigest()
        self._send(r.create_account(self._env(account), balance, key_hash))

    def deposit(self, account: str, amount: int) -> None:
        self._send(r.deposit(self._env(account), amount))

    def withdraw(self, account: str, amount: int) -> None:
        self._send(r.withdraw(self._env(account), amount))

    def create_symbol(self, symbol: str, tick: int = 100, lot: int = 100) -> None:
        self._send(r.create_symbol(self._env(symbol), tick, lot))

    def issue(self, account: str, symbol: str, qty: int) -> None:
        self._send(r.issue_shares(self._env(account), symbol, qty))

    # -- orders -----------------------------------------------------------------------------------
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
        """The order's id, or None if the ledger refused it."""
        command = r.place_order(
            self._env(account), symbol, side, qty, price, budget=budget, tif=tif,
            client_order_id=client_order_id,
        )  # fmt: skip
        for _, _, name, record in self._send(command):
            if name == ACCEPTED and record["envelope"]["key"] == account:
                return record["order_id"]
        return None

    def cancel(self, account: str, order_id: int) -> None:
        self._send(r.cancel_order(self._env(account), order_id))

    def reduce(self, account: str, order_id: int, qty: int) -> None:
        self._send(r.reduce_order(self._env(account), order_id, qty))

    # -- what the cores hold ----------------------------------------------------------------------
    def is_open(self, order_id: int) -> bool:
        ledgers = self.pipeline.ledgers()
        return order_id in ledgers[(order_id - 1) % len(ledgers)].orders

    @property
    def cash(self) -> dict[str, list[int]]:
        """account -> [available, held]"""
        return {
            a.id: [a.cash, a.held]
            for ledger in self.pipeline.ledgers()
            for a in ledger.accounts.values()
        }

    @property
    def seq(self) -> dict[str, int]:
        """symbol -> the last seq of its market.events"""
        return {symbol: book.seq for symbol, book in self.pipeline.books().items()}


# -- a random but consistent history ----------------------------------------------------------
def random_history(events: int, seed: int = 1, accounts: int = 100, symbols: int = 8) -> Market:
    """At least `events` events of a market that trades, cancels, deposits and withdraws."""
    market = Market()
    found = [
        e for chunk in history_chunks(events, seed, accounts, symbols, market=market) for e in chunk
    ]
    market.events = found
    return market


def history_chunks(
    events: int,
    seed: int = 1,
    accounts: int = 100,
    symbols: int = 8,
    *,
    chunk: int = 50_000,
    market: Market | None = None,
) -> Iterator[list[Produced]]:
    """The events of `random_history`, handed out in lists of about `chunk`; the log records
    behind them are forgotten as they go, so memory stays flat."""
    rng = random.Random(seed)
    market = Market() if market is None else market
    names = [f"S{i}" for i in range(symbols)]
    owners = [f"{1000 + i}" for i in range(accounts)]
    mids = dict.fromkeys(names, 1_000_000)  # 100.0000 in price units
    for symbol in names:
        market.create_symbol(symbol)
    holdings: dict[str, list[str]] = {}  # what each account was issued: what it can sell
    for account in owners:
        market.create_account(account, rng.randrange(50_000, 500_000) * 1_000_000)
        holdings[account] = rng.sample(names, k=max(1, min(symbols // 2, 4)))
        for symbol in holdings[account]:
            market.issue(account, symbol, rng.randrange(100, 2_000) * 100)
    placed: list[tuple[str, int]] = []
    made = 0
    while made < events:
        if len(market.events) >= min(chunk, events - made):
            made += len(market.events)
            yield market.events
            market.events = []
            market.forget()
            continue
        _random_step(market, rng, owners, names, mids, placed, holdings)
    if market.events:
        yield market.events
        market.events = []


def _random_step(market: Market, rng: random.Random, owners, names, mids, placed, holdings):
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
        oid = market.place(account, symbol, side, qty, price, tif=tif, client_order_id=f"x{roll}")
        if oid is not None:
            placed.append((account, oid))
    elif roll < 0.66:
        qty = rng.randrange(1, 20) * 100
        market.place(account, symbol, "BUY", qty, budget=mids[symbol] * qty * 2)
    elif roll < 0.90 and placed:
        owner, oid = _open_order(market, rng, placed)
        if roll < 0.85:
            market.cancel(owner if roll < 0.845 else account, oid)  # now and then not the owner's
        else:
            market.reduce(owner, oid, rng.randrange(1, 10) * 100)
    elif roll < 0.95:
        market.deposit(account, rng.randrange(1, 10_000) * 1_000_000)
    elif roll < 0.99:
        market.withdraw(account, rng.randrange(1, 20_000) * 1_000_000)
    else:
        market.issue(account, symbol, rng.randrange(1, 100) * 100)


def _open_order(market: Market, rng: random.Random, placed: list) -> tuple[str, int]:
    """A random placed order, preferring open ones (a few tries; filled ones are forgotten)."""
    for _ in range(4):
        i = rng.randrange(len(placed))
        if market.is_open(placed[i][1]) or len(placed) == 1:
            return placed[i]
        placed[i] = placed[-1]
        placed.pop()
    return placed[rng.randrange(len(placed))]


# -- onto Kafka -------------------------------------------------------------------------------
def as_events(produced: Iterable[Produced], partitions: int = 1) -> Iterator[Event]:
    """The history as the projector's Event tuples, each at the partition its key goes to."""
    offsets: dict[tuple[str, int], int] = {}
    for stream, key, name, record in produced:
        where = (stream, partition_for(key, partitions))
        offset = offsets[where] = offsets.get(where, -1) + 1
        yield Event(stream, where[1], offset, name, record)


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
