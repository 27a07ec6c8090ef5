"""The projector's pure core: a batch of decoded events -> the row changes that batch makes.

Events of one batch are folded per key first (one row per order, account, position, book level…)
so the shell can write each table with one set-based statement. Every value comes from the
records themselves (amounts in integer units, times as the record's microsecond ``ts``): balances,
positions and an order's hold are copied as the ledger stated them, never re-derived from its
settlement rules (docs/ledger.md holds those, services/ledger/state.py applies them). So the
same events give the same rows however they are cut into batches: that is what makes a rebuild
equal the incrementally built tables. No table is written from both topics, so the interleaving
of account.events and market.events between batches cannot change the result either.

Day trading (docs/daytrading.md): DayTradeDecided, PendingExpired, TriggerFired and QuoteTicked
become the DUMPLOG's entries (``audit_entries``, one row per logfile.xsd element), the balances
they state with the day-trading cash flows summed, armed triggers (last state per key) and the
shares bought from and sold to the day-trading market.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

# the input streams: account.events, market.events and the analytics app's analytics.candles
ACCOUNT, MARKET, ANALYTICS = "account", "market", "analytics"
CANDLE = "marketlog.analytics.CandleUpdated"
OTHER_SIDE = {"BUY": "SELL", "SELL": "BUY"}

# audit_log.kind: the logfile.xsd element a DUMPLOG renders the row as
CASH, SYSTEM, ERROR = "accountTransaction", "systemEvent", "errorEvent"

_SHORT: dict[str, str] = {}  # record fullname -> its short name, e.g. OrderFilled

# audit_entries.kind: the logfile.xsd element of a day-trading audit entry, and its rank among
# one command's entries in a DUMPLOG (docs/daytrading.md, *Audit log*)
USER_COMMAND, QUOTE_SERVER, ACCOUNT_TRANSACTION, SYSTEM_EVENT, ERROR_EVENT = range(5)
KIND_NAMES = ("userCommand", "quoteServer", "accountTransaction", "systemEvent", "errorEvent")
PRICE_TO_CASH = 100  # a price per whole share in cash units: price units x 100 quantity units
TRIGGER_SIDE = {  # day-trading command -> (side of the trigger it sets or cancels, arms)
    "SET_BUY_TRIGGER": ("BUY", True),
    "SET_SELL_TRIGGER": ("SELL", True),
    "CANCEL_SET_BUY": ("BUY", False),
    "CANCEL_SET_SELL": ("SELL", False),
}

COMMANDS = frozenset(
    [
        "ADD", "QUOTE", "BUY", "COMMIT_BUY", "CANCEL_BUY", "SELL", "COMMIT_SELL", "CANCEL_SELL",
        "SET_BUY_AMOUNT", "CANCEL_SET_BUY", "SET_BUY_TRIGGER", "SET_SELL_AMOUNT",
        "SET_SELL_TRIGGER", "CANCEL_SET_SELL", "DISPLAY_SUMMARY", "DUMPLOG",
    ]
)  # fmt: skip
# the day-trading commands whose syntax has a symbol (services/common/workload.py ARGS)
HAS_SYMBOL = frozenset(
    [
        "QUOTE",
        "BUY",
        "SELL",
        "SET_BUY_AMOUNT",
        "CANCEL_SET_BUY",
        "SET_BUY_TRIGGER",
        "SET_SELL_AMOUNT",
        "SET_SELL_TRIGGER",
        "CANCEL_SET_SELL",
    ]
)

# the originating command of an OrderClosed, by close reason
CLOSE_COMMAND = {"USER": "CancelOrder", "REPLACED": "ReplaceOrder", "EXPIRED": "Expire"}


class Event(NamedTuple):
    """One decoded record and where it sits in the log."""

    source: str  # ACCOUNT or MARKET
    partition: int
    offset: int
    name: str  # record fullname, e.g. marketlog.account.OrderFilled
    record: dict[str, Any]


@dataclass(slots=True)
class OrderFold:
    """An order touched by the batch: its accepted row if it is new, and what changed."""

    accepted: tuple | None  # static columns, when the order was accepted in this batch
    # absolute, as the batch's last decision about the order stated it: the hold at acceptance,
    # after a fill or a reduction, 0 once closed; None: not stated in this batch (or only by
    # records written before the ledger stated it)
    hold: int | None
    open_qty: int | None = None  # absolute, from the last event's `remaining`
    exec_qty: int = 0
    exec_notional: int = 0
    cancelled_qty: int = 0
    cancelled_ts: int | None = None
    reduced_qty: int = 0
    close_reason: str | None = None
    ts: int = 0


@dataclass(slots=True)
class Holding:
    """A balance (account) or position (account, symbol): last known absolute values + sums."""

    available: int
    held: int | None  # None: not stated in this batch (deposits and issues leave it alone)
    added: int = 0  # deposited (cash) or issued (shares)
    removed: int = 0  # withdrawn (cash)
    ts: int = 0
    # cash only, day trading (migration 0003): ADDs, paid to / received from the day-trading
    # market, and the change of the part of `held` that day trading holds
    dt_added: int = 0
    dt_paid: int = 0
    dt_received: int = 0
    dt_held: int = 0


@dataclass(slots=True)
class Stats:
    trades: int = 0
    volume: int = 0
    notional: int = 0
    high: int = 0
    low: int = 0
    last_price: int = 0
    last_qty: int = 0
    last_seq: int = 0
    last_ts: int = 0

    def last(self) -> tuple[int, int, int, int]:
        return self.last_price, self.last_qty, self.last_seq, self.last_ts


@dataclass
class Batch:
    """Row changes of one batch. Lists are appended as they are; dicts are one row per key."""

    audit: list[tuple] = field(default_factory=list)
    executions: list[tuple] = field(default_factory=list)
    trades: list[tuple] = field(default_factory=list)
    accounts: list[tuple] = field(default_factory=list)
    symbols: dict[str, tuple] = field(default_factory=dict)
    orders: dict[int, OrderFold] = field(default_factory=dict)
    balances: dict[str, Holding] = field(default_factory=dict)
    positions: dict[tuple[str, str], Holding] = field(default_factory=dict)
    levels: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)  # [Δqty, seq]
    books: dict[str, list[int]] = field(default_factory=dict)  # [first seq, last seq, ts]
    stats: dict[str, Stats] = field(default_factory=dict)
    # (symbol, interval, start ms) -> the candles row of its newest update (highest seq)
    candles: dict[tuple[str, str, int], tuple] = field(default_factory=dict)
    # day trading: audit_entries rows; (account, symbol, side) -> (trigger, txn, ts) of an armed
    # trigger or None (disarmed); (account, symbol) -> [bought, sold, ts]; accounts an ADD may
    # have created (inserted unless the account exists)
    entries: list[tuple] = field(default_factory=list)
    triggers: dict[tuple[str, str, str], tuple[int, int, int] | None] = field(default_factory=dict)
    dt_shares: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    dt_accounts: dict[str, tuple] = field(default_factory=dict)
    unknown: int = 0  # records of a type this version does not project (audited only)

    def new_orders(self) -> list[tuple]:
        return [
            (*o.accepted[:13], *_order_state(o), *o.accepted[13:])
            for o in self.orders.values()
            if o.accepted is not None
        ]

    def order_updates(self) -> list[tuple]:
        return [
            (
                oid,
                o.open_qty,
                o.exec_qty,
                o.exec_notional,
                o.cancelled_qty,
                o.cancelled_ts,
                o.reduced_qty,
                o.close_reason,
                o.hold,
                o.ts,
            )
            for oid, o in self.orders.items()
            if o.accepted is None
        ]


def _order_state(o: OrderFold) -> tuple:
    """The state columns of a new order, in table order after the static ones."""
    return (
        o.open_qty,
        o.exec_qty,
        o.exec_notional,
        o.cancelled_qty,
        o.cancelled_ts,
        o.reduced_qty,
        o.close_reason,
        o.hold,
        o.ts,
    )


class Folder:
    """Folds events into a Batch. One instance per batch; `fold` is the entry point."""

    def __init__(self) -> None:
        self.batch = Batch()

    # -- shared pieces ------------------------------------------------------------------------
    def _audit(
        self,
        e: Event,
        command: str,
        kind: str,
        account: str | None,
        symbol: str | None = None,
        order_id: int | None = None,
        side: str | None = None,
        price: int | None = None,
        qty: int | None = None,
        funds: int | None = None,
        action: str | None = None,
        message: str | None = None,
    ) -> None:
        env = e.record["envelope"]
        event = _SHORT.get(e.name) or _SHORT.setdefault(e.name, e.name.rsplit(".", 1)[-1])
        self.batch.audit.append(
            (
                e.partition, e.offset, env["ts"], env["command_id"], command, event, kind,
                account, symbol, order_id, side, price, qty, funds, action, message,
            )
        )  # fmt: skip

    def _balance(self, account: str, ts: int, available: int, held: int | None) -> Holding:
        b = self.batch.balances.get(account)
        if b is None:
            b = self.batch.balances[account] = Holding(available, held)
        b.available, b.ts = available, ts
        if held is not None:
            b.held = held
        return b

    def _position(self, account: str, symbol: str, ts: int, r: dict, held: bool) -> Holding:
        key = (account, symbol)
        p = self.batch.positions.get(key)
        if p is None:
            p = self.batch.positions[key] = Holding(r["shares_available"], None)
        p.available, p.ts = r["shares_available"], ts
        if held:
            p.held = r["shares_held"]
        return p

    def _after(self, account: str, ts: int, r: dict, cash: bool = True, shares: bool = True):
        """An order decision's balances after it: cash, and the order's symbol's shares. Only
        what the decision can change is written: holding, releasing or reducing a buy moves cash
        only, a sell's shares only (the others are restated unchanged in the record)."""
        if cash:
            self._balance(account, ts, r["cash_available"], r["cash_held"])
        if shares:
            self._position(account, r["symbol"], ts, r, held=True)

    def _after_hold(self, account: str, ts: int, r: dict) -> None:
        buy = r["side"] == "BUY"
        self._after(account, ts, r, cash=buy, shares=not buy)

    def _order(self, oid: int) -> OrderFold:
        o = self.batch.orders.get(oid)
        if o is None:  # accepted in an earlier batch: only the changes are known here
            o = self.batch.orders[oid] = OrderFold(None, None)
        return o

    # -- account.events -----------------------------------------------------------------------
    def account_created(self, e: Event, account: str, ts: int, r: dict) -> None:
        command_id, key_hash = r["envelope"]["command_id"], r["api_key_hash"]
        self.batch.accounts.append((account, r["balance"], ts, command_id, key_hash))
        self._balance(account, ts, r["balance"], 0)
        self._audit(e, "CreateAccount", CASH, account, funds=r["balance"], action="add")

    def cash_deposited(self, e: Event, account: str, ts: int, r: dict) -> None:
        self._balance(account, ts, r["cash_available"], None).added += r["amount"]
        self._audit(e, "Deposit", CASH, account, funds=r["amount"], action="add")

    def cash_withdrawn(self, e: Event, account: str, ts: int, r: dict) -> None:
        self._balance(account, ts, r["cash_available"], None).removed += r["amount"]
        self._audit(e, "Withdraw", CASH, account, funds=r["amount"], action="remove")

    def command_rejected(self, e: Event, account: str, ts: int, r: dict) -> None:
        why = r["reason"] + (" (duplicate)" if r["duplicate"] else "")
        self._audit(e, r["command"], ERROR, account, order_id=r["order_id"], message=why)

    def symbol_created(self, e: Event, symbol: str, ts: int, r: dict) -> None:
        row = (symbol, r["tick"], r["lot"], ts, r["envelope"]["command_id"])
        self.batch.symbols.setdefault(symbol, row)  # the first listing wins
        said = "listed" if r["created"] else "already listed"
        self._audit(e, "CreateSymbol", SYSTEM, None, symbol=symbol, message=said)

    def shares_issued(self, e: Event, account: str, ts: int, r: dict) -> None:
        self._position(account, r["symbol"], ts, r, held=False).added += r["qty"]
        self._audit(e, "IssueShares", SYSTEM, account, symbol=r["symbol"], qty=r["qty"])

    def order_accepted(self, e: Event, account: str, ts: int, r: dict) -> None:
        command = "PlaceOrder" if r["replaces"] is None else "ReplaceOrder"
        oid, side, symbol, price, qty = r["order_id"], r["side"], r["symbol"], r["price"], r["qty"]
        if r["duplicate"]:  # a retry answered with the original decision: nothing changed
            self._audit(
                e, command, SYSTEM, account, symbol, oid, side, price, qty, None, None, "duplicate"
            )
            return
        static = (
            oid,
            account,
            r["client_order_id"],
            r["symbol"],
            side,
            r["price"],
            r["qty"],
            r["tif"],
            r["expire_ts"],
            r["post_only"],
            r["stp"],
            r["budget"],
            r["replaces"],
            ts,  # created_ts; then command_id
            r["envelope"]["command_id"],
        )
        fold = OrderFold(static, r["hold"], open_qty=r["qty"], ts=ts)
        self.batch.orders[oid] = fold
        self._after_hold(account, ts, r)
        funds = r["hold"] if side == "BUY" else None
        self._audit(e, command, SYSTEM, account, symbol, oid, side, price, qty, funds)

    def order_filled(self, e: Event, account: str, ts: int, r: dict) -> None:
        oid, price, qty = r["order_id"], r["price"], r["qty"]
        o = self._order(oid)
        o.open_qty, o.exec_qty, o.ts = r["remaining"], o.exec_qty + qty, ts
        o.exec_notional += price * qty
        if r["hold"] is not None:
            o.hold = r["hold"]
        command_id = r["envelope"]["command_id"]
        self.batch.executions.append(
            (oid, r["seq"], r["symbol"], account, r["side"], price, qty, r["role"], ts, command_id)
        )
        self._after(account, ts, r)
        self._audit(
            e, "Fill", SYSTEM, account, r["symbol"], oid, r["side"], price, qty, price * qty
        )

    def order_reduced(self, e: Event, account: str, ts: int, r: dict) -> None:
        o = self._order(r["order_id"])
        o.open_qty, o.ts = r["remaining"], ts
        if r["hold"] is not None:
            o.hold = r["hold"]
        if r["remaining"]:
            o.reduced_qty += r["qty"]
        else:  # nothing left open: that is a cancel of the rest (status, XML <canceled>)
            o.cancelled_qty, o.cancelled_ts = o.cancelled_qty + r["qty"], ts
            o.close_reason = "USER"
        self._after_hold(account, ts, r)
        oid, side, qty = r["order_id"], r["side"], r["qty"]
        self._audit(e, "ReduceOrder", SYSTEM, account, r["symbol"], oid, side, None, qty)

    def order_closed(self, e: Event, account: str, ts: int, r: dict) -> None:
        o = self._order(r["order_id"])
        o.open_qty, o.close_reason, o.ts = 0, r["reason"], ts
        o.hold = 0  # the close released everything the order held
        if r["qty"]:
            o.cancelled_qty += r["qty"]
            o.cancelled_ts = ts
        self._after_hold(account, ts, r)
        command = CLOSE_COMMAND.get(r["reason"], "PlaceOrder")
        oid, side, qty, reason = r["order_id"], r["side"], r["qty"], r["reason"]
        self._audit(
            e, command, SYSTEM, account, r["symbol"], oid, side, None, qty, None, None, reason
        )

    def order_placed(self, e: Event, account: str, ts: int, r: dict) -> None:
        """The matcher's word that an arriving order is placed: its fills and closes, which
        change the rows, are decisions of their own; this one tells gateways when to answer."""

    def unknown_account(self, e: Event, key: str, ts: int, r: dict) -> None:
        """A decision this version cannot project: keep it in the audit log, note it."""
        self.batch.unknown += 1
        name = e.name.rsplit(".", 1)[-1]
        fields = [r.get(k) for k in ("symbol", "order_id", "side", "price", "qty")]
        funds = r.get("amount") if isinstance(r.get("amount"), int) else None
        self._audit(e, name, SYSTEM, key, *fields, funds, None, r.get("reason"))

    # -- account.events: day trading (docs/daytrading.md) --------------------------------------
    def _entry(
        self,
        e: Event,
        ts: int,
        txn: int,
        kind: int,
        user: str | None,
        command: str | None = None,
        symbol: str | None = None,
        funds: int | None = None,
        price: int | None = None,
        quote_time: int | None = None,
        cryptokey: str | None = None,
        action: str | None = None,
        filename: str | None = None,
        message: str | None = None,
    ) -> None:
        self.batch.entries.append(
            (
                ts // 1000, txn, kind, e.partition, e.offset, user, command, symbol, funds,
                price, quote_time, cryptokey, action, filename, message,
            )
        )  # fmt: skip

    def _quote_entry(self, e: Event, ts: int, txn: int, quote: dict | None) -> None:
        """A real quote-server hit; a quote from the gateway's cache logs nothing."""
        if quote is not None and quote["hit"]:
            self._entry(
                e, ts, txn, QUOTE_SERVER, quote["user"], None, quote["symbol"], None,
                quote["price"], quote["quote_server_time"], quote["cryptokey"],
            )  # fmt: skip

    def _cash_entry(self, e: Event, ts: int, txn: int, user: str, change: int) -> None:
        """A change of available cash: accountTransaction add (> 0) or remove (< 0)."""
        if change:
            action = "add" if change > 0 else "remove"
            self._entry(e, ts, txn, ACCOUNT_TRANSACTION, user, funds=abs(change), action=action)

    def _dt_shares(self, user: str, symbol: str, ts: int, bought: int, sold: int) -> None:
        flows = self.batch.dt_shares.get((user, symbol))
        if flows is None:
            self.batch.dt_shares[(user, symbol)] = [bought, sold, ts]
        else:
            flows[0] += bought
            flows[1] += sold
            flows[2] = ts

    def day_trade_decided(self, e: Event, key: str, ts: int, r: dict) -> None:
        user, command, txn, symbol = r["user"] or None, r["command"], r["txn"], r["symbol"]
        if r["code"] == "bad_input" or command not in COMMANDS:
            # a record the gateway could not have appended (a hostile producer), refused by the
            # ledger: it changed nothing and, like a line the gateway refuses, has no entries
            # (logfile.xsd could not even name an unknown command)
            self.batch.unknown += 1
            return
        # the entries show the command's own fields: a COMMIT's decision names the pending
        # entry's symbol, the command itself has none
        shown = symbol if command in HAS_SYMBOL else None
        given = r["amount"]  # userCommand funds: the amount, or the trigger price
        if given is None and r["trigger"] is not None:
            given = r["trigger"] * PRICE_TO_CASH
        filename = r["filename"]
        self._entry(e, ts, txn, USER_COMMAND, user, command, shown, given, filename=filename)
        self._quote_entry(e, ts, txn, r["quote"])
        change = r["cash_change"]
        if user is not None:
            self._cash_entry(e, ts, txn, user, change)
        if not r["ok"]:  # nothing changed but the expiry sweep (its own PendingExpired records)
            why = f"{r['code']}: {r['message']}" if r["message"] else r["code"]
            self._entry(
                e, ts, txn, ERROR_EVENT, user, command, shown, given, filename=filename,
                message=why,
            )  # fmt: skip
            return
        if user is None or command == "QUOTE":  # a QUOTE moves nothing and needs no account
            return
        b = self._balance(user, ts, r["cash"], r["held"])
        external = 0  # cash in from (> 0) or out to (< 0) outside the exchange
        if command == "ADD":
            external = r["amount"]
            b.dt_added += external
            self.batch.dt_accounts.setdefault(user, (user, 0, ts, r["envelope"]["command_id"], ""))
        elif command == "COMMIT_BUY":
            external = -r["funds"]
            b.dt_paid += r["funds"]
            self._dt_shares(user, symbol or "", ts, r["shares"], 0)
        elif command == "COMMIT_SELL":
            external = r["funds"]
            b.dt_received += r["funds"]
            self._dt_shares(user, symbol or "", ts, 0, r["shares"])
        else:
            trigger = TRIGGER_SIDE.get(command)
            if trigger is not None:
                side, arms = trigger
                price = r["trigger"] if r["trigger"] is not None else r["price"]
                self.batch.triggers[(user, symbol, side)] = (price, txn, ts) if arms else None
        # what day trading holds moves by what came in from outside minus what became available
        b.dt_held += external - change

    def pending_expired(self, e: Event, key: str, ts: int, r: dict) -> None:
        """A pending BUY or SELL released by the expiry sweep (a BUY's cost back to cash)."""
        user, change = r["user"], r["cash_change"]
        self._cash_entry(e, ts, r["txn"], user, change)
        self._balance(user, ts, r["cash"], r["held"]).dt_held -= change

    def trigger_fired(self, e: Event, key: str, ts: int, r: dict) -> None:
        """A trigger executed on a quote tick: shares bought or sold at the tick's price."""
        user, side, symbol, txn = r["user"], r["side"], r["symbol"], r["txn"]
        funds, change = r["funds"], r["cash_change"]
        self._cash_entry(e, ts, txn, user, change)
        command = "SET_BUY_TRIGGER" if side == "BUY" else "SET_SELL_TRIGGER"
        self._entry(e, ts, txn, SYSTEM_EVENT, user, command, symbol, funds)
        b = self._balance(user, ts, r["cash"], r["held"])
        if side == "BUY":
            external = -funds
            b.dt_paid += funds
            self._dt_shares(user, symbol, ts, r["shares"], 0)
        else:
            external = funds
            b.dt_received += funds
            self._dt_shares(user, symbol, ts, 0, r["shares"])
        b.dt_held += external - change
        self.batch.triggers[(user, symbol, side)] = None  # one-shot

    def quote_ticked(self, e: Event, key: str, ts: int, r: dict) -> None:
        """A quote tick (partition 0 only). Its transactionNum: the record's ``txn`` once the
        schema has one; until then 1 + the record's offset (positive, distinct per tick)."""
        txn = r.get("txn") or e.offset + 1
        self._quote_entry(e, ts, txn, r["quote"])

    # -- market.events ------------------------------------------------------------------------
    def _level(self, symbol: str, side: str, price: int, delta: int, seq: int) -> None:
        level = self.batch.levels.get((symbol, side, price))
        if level is None:
            self.batch.levels[(symbol, side, price)] = [delta, seq]
        else:
            level[0] += delta
            level[1] = seq

    def order_rested(self, symbol: str, ts: int, r: dict) -> None:
        self._level(symbol, r["side"], r["price"], r["qty"], r["seq"])

    def trade(self, symbol: str, ts: int, r: dict) -> None:
        seq, price, qty = r["seq"], r["price"], r["qty"]
        self._level(symbol, OTHER_SIDE[r["taker_side"]], price, -qty, seq)
        maker, taker = r["maker_order_id"], r["taker_order_id"]
        command_id = r["envelope"]["command_id"]
        self.batch.trades.append(
            (symbol, seq, price, qty, maker, taker, r["taker_side"], ts, command_id)
        )
        s = self.batch.stats.get(symbol)
        if s is None:
            s = self.batch.stats[symbol] = Stats(high=price, low=price)
        s.trades, s.volume, s.notional = s.trades + 1, s.volume + qty, s.notional + price * qty
        s.high, s.low = max(s.high, price), min(s.low, price)
        s.last_price, s.last_qty, s.last_seq, s.last_ts = price, qty, seq, ts

    def order_cancelled(self, symbol: str, ts: int, r: dict) -> None:
        if r["rested"] and r["price"] is not None:
            self._level(symbol, r["side"], r["price"], -r["qty"], r["seq"])

    def order_reduced_public(self, symbol: str, ts: int, r: dict) -> None:
        if r["rested"]:  # a taker decremented before it rests was never on a level
            self._level(symbol, r["side"], r["price"], -r["qty"], r["seq"])

    def candle(self, e: Event) -> None:
        """A candle update: its row, unless this batch already has a newer one of that candle."""
        if e.name != CANDLE:
            self.batch.unknown += 1
            return
        r = e.record
        key = (r["envelope"]["key"], r["interval"], r["start"])
        found = self.batch.candles.get(key)
        if found is None or found[11] < r["seq"]:
            self.batch.candles[key] = (
                *key,
                r["open"],
                r["high"],
                r["low"],
                r["close"],
                r["volume"],
                r["notional"],
                r["vwap"],
                r["trades"],
                r["seq"],
                r["volume_24h"],
            )

    # -- dispatch -----------------------------------------------------------------------------
    def fold(self, events: Iterable[Event]) -> Batch:
        account_handlers = {
            "marketlog.account.AccountCreated": self.account_created,
            "marketlog.account.CashDeposited": self.cash_deposited,
            "marketlog.account.CashWithdrawn": self.cash_withdrawn,
            "marketlog.account.CommandRejected": self.command_rejected,
            "marketlog.account.SymbolCreated": self.symbol_created,
            "marketlog.account.SharesIssued": self.shares_issued,
            "marketlog.account.OrderAccepted": self.order_accepted,
            "marketlog.account.OrderFilled": self.order_filled,
            "marketlog.account.OrderReduced": self.order_reduced,
            "marketlog.account.OrderClosed": self.order_closed,
            "marketlog.account.OrderPlaced": self.order_placed,
            "marketlog.account.DayTradeDecided": self.day_trade_decided,
            "marketlog.account.PendingExpired": self.pending_expired,
            "marketlog.account.TriggerFired": self.trigger_fired,
            "marketlog.account.QuoteTicked": self.quote_ticked,
        }
        market_handlers = {
            "marketlog.market.OrderRested": self.order_rested,
            "marketlog.market.Trade": self.trade,
            "marketlog.market.OrderCancelled": self.order_cancelled,
            "marketlog.market.OrderReduced": self.order_reduced_public,
        }
        for e in events:
            env = e.record["envelope"]
            if e.source == ANALYTICS:
                self.candle(e)
                continue
            if e.source == ACCOUNT:
                handler = account_handlers.get(e.name, self.unknown_account)
                handler(e, env["key"], env["ts"], e.record)
                continue
            if e.name == "marketlog.market.BookChecksum":  # replicas' check: no rows, no new seq
                continue
            market = market_handlers.get(e.name)
            if market is None:
                self.batch.unknown += 1
            else:
                market(env["key"], env["ts"], e.record)
            seq = e.record.get("seq")
            if isinstance(seq, int):
                self._book(env["key"], seq, env["ts"])
        return self.batch

    def _book(self, symbol: str, seq: int, ts: int) -> None:
        book = self.batch.books.get(symbol)
        if book is None:
            self.batch.books[symbol] = [seq, seq, ts]
        else:
            book[1], book[2] = seq, ts


def fold(events: Iterable[Event]) -> Batch:
    """The row changes of a batch of events, in log order per partition."""
    return Folder().fold(events)
