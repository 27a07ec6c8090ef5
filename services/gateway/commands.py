"""Ledger commands as records, and which decisions answer each. Pure: ids and time are passed in.

Every command goes to ``ledger.commands`` keyed by account, except CreateSymbol and QuoteTick:
keyed by symbol and sent to every partition (each ledger partition lists the symbol, fires its
users' triggers; partition 0 answers). A day-trading command (DayTrade) is keyed by its userid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEDGER = "marketlog.ledger."
ACCOUNT = "marketlog.account."
REJECTED = ACCOUNT + "CommandRejected"
ACCEPTED = ACCOUNT + "OrderAccepted"
PLACED = ACCOUNT + "OrderPlaced"
FILLED = ACCOUNT + "OrderFilled"
# decisions of the ledger on the matcher's settlements (a refused one names the settlement)
SETTLEMENTS = frozenset(ACCOUNT + n for n in ("OrderFilled", "OrderClosed", "OrderReduced"))
SETTLEMENT_COMMANDS = frozenset(("Fill", "OrderClosed", "OrderReduced"))


@dataclass(frozen=True)
class Stamp:
    """What the gateway stamps on a command: its id, its time and where to reply."""

    command_id: str
    ts: int  # microseconds since the epoch
    reply_to: str


@dataclass(frozen=True)
class Command:
    name: str  # schema fullname
    key: str  # account (CreateSymbol: symbol)
    record: dict[str, Any]
    answers: frozenset[str]  # decision names (on account.events, same key) that answer it
    broadcast: bool = False  # every partition of ledger.commands
    command_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "command_id", self.record["envelope"]["command_id"])


def _envelope(stamp: Stamp, key: str) -> dict[str, Any]:
    return {"command_id": stamp.command_id, "key": key, "ts": stamp.ts, "reply_to": stamp.reply_to}


def _command(stamp: Stamp, kind: str, key: str, answer: str, **fields: Any) -> Command:
    return Command(
        LEDGER + kind,
        key,
        {"envelope": _envelope(stamp, key), **fields},
        frozenset({ACCOUNT + a for a in answer.split("|")} | {REJECTED}),
        broadcast=kind in BROADCAST,
    )


BROADCAST = frozenset(("CreateSymbol", "QuoteTick"))
DAYTRADE_DECIDED = ACCOUNT + "DayTradeDecided"


def create_account(stamp: Stamp, account: str, balance: int, api_key_hash: str = "") -> Command:
    return _command(
        stamp,
        "CreateAccount",
        account,
        "AccountCreated",
        balance=balance,
        api_key_hash=api_key_hash,
    )


def deposit(stamp: Stamp, account: str, amount: int) -> Command:
    return _command(stamp, "Deposit", account, "CashDeposited", amount=amount)


def withdraw(stamp: Stamp, account: str, amount: int) -> Command:
    return _command(stamp, "Withdraw", account, "CashWithdrawn", amount=amount)


def create_symbol(stamp: Stamp, symbol: str, tick: int = 1, lot: int = 1) -> Command:
    return _command(stamp, "CreateSymbol", symbol, "SymbolCreated", tick=tick, lot=lot)


def issue_shares(stamp: Stamp, account: str, symbol: str, qty: int) -> Command:
    return _command(stamp, "IssueShares", account, "SharesIssued", symbol=symbol, qty=qty)


@dataclass(frozen=True)
class OrderSpec:
    """A validated order, in exchange units; the XML and HTTP surfaces both build one."""

    symbol: str
    side: str  # BUY | SELL
    qty: int
    price: int | None = None  # None: market order
    tif: str = "GTC"
    expire_ts: int | None = None
    post_only: bool = False
    stp: str = "NONE"
    budget: int | None = None
    client_order_id: str = ""


def place_order(stamp: Stamp, account: str, order: OrderSpec) -> Command:
    return _command(
        stamp,
        "PlaceOrder",
        account,
        "OrderAccepted",
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        price=order.price,
        qty=order.qty,
        tif=order.tif,
        expire_ts=order.expire_ts,
        post_only=order.post_only,
        stp=order.stp,
        budget=order.budget,
    )


def cancel_order(stamp: Stamp, account: str, order_id: int) -> Command:
    return _command(stamp, "CancelOrder", account, "OrderClosed", order_id=order_id)


def reduce_order(stamp: Stamp, account: str, order_id: int, qty: int) -> Command:
    # reducing by the whole open quantity closes the order (the matcher says OrderClosed)
    return _command(
        stamp, "ReduceOrder", account, "OrderReduced|OrderClosed", order_id=order_id, qty=qty
    )


def replace_order(stamp: Stamp, account: str, order_id: int, price: int, qty: int) -> Command:
    # done when the matcher has closed the old order (REPLACED); the new order's OrderAccepted
    # comes before that, under the same command id
    return _command(
        stamp, "ReplaceOrder", account, "OrderClosed", order_id=order_id, price=price, qty=qty
    )


# -- day trading (docs/daytrading.md) ----------------------------------------------------------
CENT_CASH = 10_000  # cash units per cent
CENT_PRICE = 100  # price units per cent
TRIGGER_COMMANDS = frozenset(("SET_BUY_TRIGGER", "SET_SELL_TRIGGER"))
QUOTED_COMMANDS = frozenset(("QUOTE", "BUY", "SELL"))


@dataclass(frozen=True)
class QuoteRecord:
    """A quote as the log carries it (marketlog.Quote): price in price units; ``hit`` when the
    command that carries it made the quote server answer (else it came from the cache)."""

    price: int
    symbol: str
    user: str
    quote_server_time: int
    cryptokey: str
    hit: bool

    def record(self) -> dict[str, Any]:
        return {
            "price": self.price,
            "symbol": self.symbol,
            "user": self.user,
            "quote_server_time": self.quote_server_time,
            "cryptokey": self.cryptokey,
            "hit": self.hit,
        }


@dataclass(frozen=True)
class DayTradeSpec:
    """A valid day-trading command in ledger units: ``amount`` in cash units (ADD, BUY, SELL,
    SET_*_AMOUNT), ``trigger`` in price units (SET_*_TRIGGER); ``user`` "" for the admin DUMPLOG."""

    command: str
    user: str
    txn: int
    symbol: str | None = None
    amount: int | None = None
    trigger: int | None = None
    filename: str | None = None

    @classmethod
    def from_cents(
        cls,
        command: str,
        user: str | None,
        txn: int,
        symbol: str | None = None,
        cents: int | None = None,
        filename: str | None = None,
    ) -> DayTradeSpec:
        """From the line's values (services.common.workload: money in cents)."""
        trigger = command in TRIGGER_COMMANDS
        return cls(
            command,
            user or "",
            txn,
            symbol,
            None if cents is None or trigger else cents * CENT_CASH,
            cents * CENT_PRICE if cents is not None and trigger else None,
            filename,
        )


def day_trade(stamp: Stamp, spec: DayTradeSpec, quote: QuoteRecord | None = None) -> Command:
    return _command(
        stamp,
        "DayTrade",
        spec.user,
        "DayTradeDecided",
        command=spec.command,
        user=spec.user,
        txn=spec.txn,
        symbol=spec.symbol,
        amount=spec.amount,
        trigger=spec.trigger,
        filename=spec.filename,
        quote=None if quote is None else quote.record(),
    )


def quote_tick(stamp: Stamp, quote: QuoteRecord) -> Command:
    """A quote for a symbol with armed triggers, to every ledger partition; nothing answers it
    (partition 0's QuoteTicked is for the audit log)."""
    return _command(stamp, "QuoteTick", quote.symbol, "QuoteTicked", quote=quote.record())


def answers(command: Command, name: str, record: dict[str, Any]) -> bool:
    """Whether a decision with the command's id answers it (and is not, say, the other side's fill
    caused by the same command)."""
    if name not in command.answers or record["envelope"]["key"] != command.key:
        return False
    if "order_id" in command.record and "order_id" in record and name != REJECTED:
        return record["order_id"] == command.record["order_id"]
    return True


class Reply:
    """What a gateway hears about one command, until it can answer.

    ``placed`` (an order only): the answer waits past the OrderAccepted until the order is
    placed (OrderPlaced) and every settlement its placement caused, on any account, is decided:
    OrderPlaced says how many there were. Every decision under the command's id is kept
    (``heard``) whatever its account or order, and whenever it arrives: a counterparty's fill
    may be heard before the order's own acceptance (another partition).
    """

    __slots__ = ("answer", "command", "heard", "placed", "placement", "settled")

    def __init__(self, command: Command, placed: bool = False) -> None:
        self.command = command
        self.placed = placed
        self.heard: list[tuple[str, dict[str, Any]]] = []
        self.answer: int | None = None  # index in heard of the decision that answers
        self.placement: dict[str, Any] | None = None
        self.settled = 0

    @property
    def accepted(self) -> bool:
        return self.answer is not None

    def hear(self, name: str, record: dict[str, Any]) -> bool:
        """Note one decision under the command's id; True once the command can be answered."""
        self.heard.append((name, record))
        if name in SETTLEMENTS or (name == REJECTED and record["command"] in SETTLEMENT_COMMANDS):
            self.settled += 1
        if self.answer is None:
            if not answers(self.command, name, record):
                return False
            self.answer = len(self.heard) - 1
            if not self.placed or name != ACCEPTED or record["duplicate"]:
                return True  # a duplicate was placed before: its retry changes nothing
        elif name == PLACED and record["order_id"] == self.heard[self.answer][1]["order_id"]:
            self.placement = record
        return self.done

    @property
    def done(self) -> bool:
        if self.answer is None:
            return False
        name, record = self.heard[self.answer]
        if not self.placed or name != ACCEPTED or record["duplicate"]:
            return True
        return self.placement is not None and self.settled >= self.placement["settlements"]
