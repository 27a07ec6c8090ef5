"""Seeded random traffic for a Pipeline: gateways stamping commands, traders choosing them.

``Gateway`` plays the gateways: it stamps each command with an id and a time that only moves
forward (the record's time is the only clock the cores know), appends it, and learns the ids of
accepted orders from ``account.events`` as a client would. ``random_command`` draws one command
from everything the ledger accepts or refuses: accounts, deposits, withdrawals, listings, share
issues, limit/market/IOC/FOK/GTD/post-only orders with every self-trade-prevention mode and
client order ids that repeat, cancels, reduces and replaces (mostly of the trader's own orders),
now and then a malformed amount, and day trading (``random_day_trade``: the 16 commands with
the quote a gateway would log, by exchange accounts and by accounts only ADD creates, quote ticks
to every partition, and now and then a minute's pause so that pending BUYs/SELLs expire).
``random_session`` drives a pipeline with such traffic, its deliveries lagging a few records
behind, as on the log.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from . import records as r
from .pipeline import ACCOUNT_EVENTS, LEDGER_COMMANDS, Pipeline

TICK, LOT, MID = 100, 100, 1_000_000  # 0.01, 1 share, 100.00
ACCEPTED = "marketlog.account.OrderAccepted"
STPS = ("NONE", "CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH", "DECREMENT_AND_CANCEL")


class Gateway:
    """Stamps and appends commands; remembers which orders were accepted, and whose."""

    def __init__(self, pipeline: Pipeline, start_ts: int = 1_700_000_000_000_000) -> None:
        self.pipeline = pipeline
        self.clock = start_ts
        self.commands = 0
        self.orders: list[tuple[str, int, str]] = []  # (account, order id, symbol) accepted
        self._heard: dict[int, int] = {}  # account.events offsets read so far

    def envelope(self, key: str, after: int = 1000) -> dict:
        """The next command's envelope, `after` µs later than the last."""
        self.clock += after
        self.commands += 1
        return r.envelope(f"c{self.commands}", key, self.clock, "sim")

    def send(self, command: r.Command) -> None:
        self.pipeline.submit(*command)

    def hear(self) -> None:
        """Read the new decisions: the ids of orders accepted since the last call."""
        for _, _, name, record in self.pipeline.records(ACCOUNT_EVENTS, self._heard):
            if name == ACCEPTED and not record["duplicate"]:
                self.orders.append(
                    (record["envelope"]["key"], record["order_id"], record["symbol"])
                )
        log = self.pipeline.log
        for partition in range(log.partitions(ACCOUNT_EVENTS)):
            self._heard[partition] = log.end(ACCOUNT_EVENTS, partition)


@dataclass
class Traders:
    """Who trades what: account names and each listed symbol's (tick, lot)."""

    people: list[str]
    specs: dict[str, tuple[int, int]]
    mids: dict[str, int] = field(default_factory=dict)
    day_trading: bool = False  # mix day-trading commands and quote ticks in (make simulate)

    def __post_init__(self) -> None:
        for symbol in self.specs:
            self.mids.setdefault(symbol, MID)


def open_market(gw: Gateway, rng: random.Random, traders: Traders, shares: int = 500) -> None:
    """List every symbol, fund every account and give it shares to sell."""
    for symbol, (tick, lot) in traders.specs.items():
        gw.send(r.create_symbol(gw.envelope(symbol), tick, lot))
    for person in traders.people:
        key_hash = hashlib.sha256(person.encode()).hexdigest()
        gw.send(r.create_account(gw.envelope(person), rng.randrange(10**10, 10**12), key_hash))
        for symbol, (_, lot) in traders.specs.items():
            gw.send(r.issue_shares(gw.envelope(person), symbol, rng.randrange(1, shares) * lot))


def random_command(gw: Gateway, rng: random.Random, traders: Traders) -> None:
    """One command of the mix (see the module docstring)."""
    person, symbol = rng.choice(traders.people), rng.choice(list(traders.specs))
    env, roll = gw.envelope(person, rng.choice((1, 1000, 1000, 50_000))), rng.random()
    if roll < 0.06:
        gw.send(r.deposit(env, rng.choice((rng.randrange(1, 10**9), 0, -5))))
    elif roll < 0.09:
        gw.send(r.withdraw(env, rng.choice((rng.randrange(1, 10**9), 10**13))))
    elif roll < 0.10:
        lot = traders.specs[symbol][1]
        gw.send(r.issue_shares(env, symbol, rng.choice((rng.randrange(1, 50) * lot, 0, 7))))
    elif roll < 0.105:
        name = rng.choice((*traders.people, f"new{gw.commands}"))
        gw.send(r.create_account(gw.envelope(name), rng.choice((10**9, 0, -1))))
    elif roll < 0.11:  # a listing again (it keeps its sizes), or a bad one
        tick, lot = rng.choice((traders.specs[symbol], (0, LOT), (TICK, 0)))
        gw.send(r.create_symbol(gw.envelope(symbol), tick, lot))
    elif roll < 0.25 and traders.day_trading:
        random_day_trade(gw, rng, traders)
    elif roll < 0.66:
        gw.send(random_order(env, rng, traders, symbol))
    else:
        gw.hear()
        if gw.orders:
            gw.send(random_amend(gw, rng, traders, env))


DAY_SYMBOLS = ("S", "ABC")  # the outside market's: kept apart from exchange positions
DAY_COMMANDS = (
    "ADD", "QUOTE", "BUY", "COMMIT_BUY", "CANCEL_BUY", "SELL", "COMMIT_SELL", "CANCEL_SELL",
    "SET_BUY_AMOUNT", "SET_BUY_TRIGGER", "CANCEL_SET_BUY", "SET_SELL_AMOUNT",
    "SET_SELL_TRIGGER", "CANCEL_SET_SELL", "DISPLAY_SUMMARY", "DUMPLOG",
)  # fmt: skip
WITH_SYMBOL = frozenset(c for c in DAY_COMMANDS if c in ("QUOTE", "BUY", "SELL") or "SET_" in c)
CENT_CASH, CENT_PRICE = 10_000, 100  # cash and price units of a cent


def random_day_trade(gw: Gateway, rng: random.Random, traders: Traders) -> None:
    """A day-trading command or a quote tick, money in whole cents as the line protocol has it."""
    symbol = rng.choice(DAY_SYMBOLS)
    price = rng.randint(5_00, 20_00) * CENT_PRICE  # the outside market's quote
    after = 61_000_000 if rng.random() < 0.03 else 1000  # now and then a minute: expiries
    if rng.random() < 0.15:
        gw.send(r.quote_tick(gw.envelope(symbol, after), r.quote(symbol, price)))
        return
    user = rng.choice((*traders.people, "dt1", "dt2"))
    env = gw.envelope(user, after)
    command = rng.choice(DAY_COMMANDS)
    fields: dict = {"txn": gw.commands}
    if command in ("ADD", "BUY", "SELL", "SET_BUY_AMOUNT", "SET_SELL_AMOUNT"):
        fields["amount"] = rng.randint(1_00, 200_00) * CENT_CASH
    if command in ("SET_BUY_TRIGGER", "SET_SELL_TRIGGER"):
        fields["trigger"] = rng.randint(5_00, 20_00) * CENT_PRICE
    if command in WITH_SYMBOL:
        fields["symbol"] = symbol
    if command in ("QUOTE", "BUY", "SELL"):
        fields["quote"] = r.quote(symbol, price, user)
    if command == "DUMPLOG":
        fields["filename"] = "out.xml"
        if rng.random() < 0.3:  # the admin form
            env = {**env, "key": ""}
    gw.send(r.day_trade(env, command, **fields))
    if command in ("BUY", "SELL") and rng.random() < 0.6:  # mostly answered right away
        then = rng.choice(("COMMIT_", "CANCEL_")) + command
        gw.send(r.day_trade(gw.envelope(user), then, txn=gw.commands))


def random_order(env: dict, rng: random.Random, traders: Traders, symbol: str) -> r.Command:
    tick, lot = traders.specs[symbol]
    mid = traders.mids[symbol] = max(20 * tick, traders.mids[symbol] + rng.randint(-2, 2) * tick)
    side, qty = rng.choice(("BUY", "SELL")), rng.randrange(1, 20) * lot
    away = rng.randrange(-4, 12) * tick  # mostly passive, some crossing the spread
    price, kind = (mid - away if side == "BUY" else mid + away), rng.random()
    extra: dict = {}
    if rng.random() < 0.3:  # repeated now and then: a retry, answered with the original
        extra["client_order_id"] = f"o{rng.randrange(40)}"
    if rng.random() < 0.25:
        extra["stp"] = rng.choice(STPS)
    if kind < 0.08:  # a market order: a buy spends at most its budget
        price, extra["tif"] = None, rng.choice(("IOC", "FOK", "GTC"))
        if side == "BUY":
            extra["budget"] = rng.randrange(1, 20) * lot * mid
    elif kind < 0.2:
        extra["tif"] = rng.choice(("IOC", "FOK"))
    elif kind < 0.26:
        extra["post_only"] = True
    elif kind < 0.34:  # expires within a few dozen commands
        extra["tif"], extra["expire_ts"] = "GTD", env["ts"] + rng.randrange(1, 60) * 1000
    elif kind < 0.36:  # refused (unless the sizes allow it): no quantity, a part lot, …
        qty, price = rng.choice(((0, price), (qty + 1, price), (qty, price + 1), (qty, 0)))
    return r.place_order(env, symbol, side, qty, price, **extra)


def random_amend(gw: Gateway, rng: random.Random, traders: Traders, env: dict) -> r.Command:
    """Cancel, reduce or replace a known order: mostly the owner's own, now and then not."""
    owner, order_id, symbol = rng.choice(gw.orders[-200:])
    if rng.random() < 0.9:
        env = {**env, "key": owner}
    tick, lot = traders.specs[symbol]
    roll = rng.random()
    if roll < 0.55:
        return r.cancel_order(env, order_id)
    if roll < 0.75:
        return r.reduce_order(env, order_id, rng.choice((lot, 2 * lot, 50 * lot, 0)))
    price = traders.mids[symbol] + rng.randrange(-10, 11) * tick
    return r.replace_order(env, order_id, price, rng.randrange(1, 10) * lot)


def random_session(
    pipeline: Pipeline,
    rng: random.Random,
    records: int,
    accounts: int = 40,
    symbols: int = 3,
    day_trading: bool = False,
) -> Gateway:
    """Traffic until ledger.commands holds about `records` records, then everything settles."""
    gw = Gateway(pipeline)
    traders = Traders(
        [f"a{i}" for i in range(accounts)],
        {f"S{i}": (TICK, LOT) for i in range(symbols)},
        day_trading=day_trading,
    )
    open_market(gw, rng, traders)
    log = pipeline.log
    while sum(log.end(LEDGER_COMMANDS, p) for p in range(pipeline.partitions)) < records:
        random_command(gw, rng, traders)
        pipeline.run(rng, rng.randint(1, 4))  # the stages lag the gateways by a few records
    pipeline.drain(rng)
    return gw
