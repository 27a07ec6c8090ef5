"""What the ledger decides: one typed record per decision, built here and read by name.

A decision is ``(key, record)``: the record's Kafka key (an account, or a symbol for what goes to
the matcher and for SymbolCreated) and one of the records below. Each record is a NamedTuple whose
fields are its Avro schema's, in the schema's order (tests/unit/test_ledger_decisions.py holds
them to ``schemas/``): the shell hands it to the codec's values encoder as it is, since a NamedTuple
is the tuple that encoder takes. This is the ledger's hot path: a 15-field NamedTuple costs 0.4 µs
through its constructor, 0.28 µs made with ``tuple.__new__`` as the builders below do, against
2.9 µs for a frozen slotted dataclass. ``envelope`` is the input record's envelope, shared, never
copied: the shell re-keys it to the decision's key when it writes it.

Pure: no codec, no schemas read here; ``EMITTED`` names each record's topic and Avro record type.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .accounts import SIDES, Account, Order, Position

ACCOUNT_EVENTS = "account.events"
MATCH_COMMANDS = "match.commands"

Envelope = dict[str, Any]  # command_id, key, ts, reply_to of the input record


# -- account.events -----------------------------------------------------------------------------
class AccountCreated(NamedTuple):
    envelope: Envelope
    balance: int
    api_key_hash: str


class CashDeposited(NamedTuple):
    envelope: Envelope
    amount: int
    cash_available: int


class CashWithdrawn(NamedTuple):
    envelope: Envelope
    amount: int
    cash_available: int


class CommandRejected(NamedTuple):
    envelope: Envelope
    command: str  # the refused command's short record name, e.g. PlaceOrder, Fill
    reason: str
    order_id: int | None
    duplicate: bool


class SymbolCreated(NamedTuple):
    envelope: Envelope
    tick: int
    lot: int
    created: bool  # False: it was listed already, and keeps its sizes


class SharesIssued(NamedTuple):
    envelope: Envelope
    symbol: str
    qty: int
    shares_available: int


class OrderAccepted(NamedTuple):
    envelope: Envelope
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    price: int | None
    qty: int
    tif: str
    expire_ts: int | None
    post_only: bool
    stp: str
    budget: int | None
    hold: int
    replaces: int | None
    duplicate: bool
    cash_available: int
    cash_held: int
    shares_available: int
    shares_held: int


class OrderFilled(NamedTuple):
    """A settlement: the ledger paid, delivered and released. ``released`` is the hold given
    back by this fill (a buy below its limit: (limit - price) x qty; the whole rest when the order
    is done) and ``hold`` what the order still holds, so no reader re-derives either."""

    envelope: Envelope
    order_id: int
    symbol: str
    side: str
    price: int
    qty: int
    remaining: int
    seq: int
    role: str
    released: int
    hold: int
    cash_available: int
    cash_held: int
    shares_available: int
    shares_held: int


class OrderReduced(NamedTuple):
    envelope: Envelope
    order_id: int
    symbol: str
    side: str
    qty: int
    remaining: int
    released: int
    hold: int  # what the order still holds after the reduction
    cash_available: int
    cash_held: int
    shares_available: int
    shares_held: int


class OrderClosed(NamedTuple):
    envelope: Envelope
    order_id: int
    symbol: str
    side: str
    qty: int
    reason: str
    released: int  # everything the order still held: a closed order holds nothing
    cash_available: int
    cash_held: int
    shares_available: int
    shares_held: int


class OrderPlaced(NamedTuple):
    envelope: Envelope
    order_id: int
    symbol: str
    side: str
    open_qty: int
    seq: int | None
    settlements: int


# -- day trading (services/ledger/trading.py, docs/daytrading.md) -------------------------------
class DayTradeDecided(NamedTuple):
    """A day-trading command decided: its fields again (``symbol``: for COMMIT/CANCEL_BUY/SELL
    the popped entry's), then what it did; errors have ``ok`` false, ``code`` and ``message``."""

    envelope: Envelope
    command: str
    user: str
    txn: int
    symbol: str | None
    amount: int | None
    trigger: int | None
    filename: str | None
    quote: dict | None
    ok: bool
    code: str
    message: str
    shares: int | None
    price: int | None
    funds: int | None
    cash_change: int
    cash: int
    held: int
    summary: str | None


class TradeOutcome(NamedTuple):
    """What a day-trading command did, before it is a DayTradeDecided (money in ledger units);
    ``symbol`` overrides the command's (COMMIT/CANCEL name the entry they popped)."""

    ok: bool
    code: str = ""
    message: str = ""
    shares: int | None = None
    price: int | None = None
    funds: int | None = None
    cash_change: int = 0
    summary: str | None = None
    symbol: str | None = None


class PendingExpired(NamedTuple):
    envelope: Envelope
    user: str
    side: str
    symbol: str
    shares: int
    price: int
    funds: int
    txn: int
    cash_change: int
    cash: int
    held: int


class TriggerFired(NamedTuple):
    envelope: Envelope  # the tick's, keyed to the user
    user: str
    side: str
    symbol: str
    shares: int
    price: int
    funds: int
    txn: int  # of the SET_*_TRIGGER that last set the trigger
    cash_change: int
    cash: int
    held: int


class QuoteTicked(NamedTuple):
    envelope: Envelope
    quote: dict


# -- match.commands -----------------------------------------------------------------------------
class MatchPlaceOrder(NamedTuple):
    envelope: Envelope
    account: str
    order_id: int
    side: str
    price: int | None
    qty: int
    tif: str
    expire_ts: int | None
    post_only: bool
    stp: str
    budget: int | None
    lot: int


class MatchCancelOrder(NamedTuple):
    envelope: Envelope
    account: str
    order_id: int


class MatchReduceOrder(NamedTuple):
    envelope: Envelope
    account: str
    order_id: int
    qty: int


class MatchReplaceOrder(NamedTuple):
    envelope: Envelope
    account: str
    order_id: int
    new_order_id: int
    price: int
    qty: int


Record = (
    AccountCreated
    | CashDeposited
    | CashWithdrawn
    | CommandRejected
    | SymbolCreated
    | SharesIssued
    | OrderAccepted
    | OrderFilled
    | OrderReduced
    | OrderClosed
    | OrderPlaced
    | DayTradeDecided
    | PendingExpired
    | TriggerFired
    | QuoteTicked
    | MatchPlaceOrder
    | MatchCancelOrder
    | MatchReduceOrder
    | MatchReplaceOrder
)
Decision = tuple[str, Record]  # (key, record)

_A, _M = "marketlog.account.", "marketlog.match."
# every record type the ledger emits -> (its topic's role, its Avro record type)
EMITTED: dict[type, tuple[str, str]] = {
    AccountCreated: (ACCOUNT_EVENTS, _A + "AccountCreated"),
    CashDeposited: (ACCOUNT_EVENTS, _A + "CashDeposited"),
    CashWithdrawn: (ACCOUNT_EVENTS, _A + "CashWithdrawn"),
    CommandRejected: (ACCOUNT_EVENTS, _A + "CommandRejected"),
    SymbolCreated: (ACCOUNT_EVENTS, _A + "SymbolCreated"),
    SharesIssued: (ACCOUNT_EVENTS, _A + "SharesIssued"),
    OrderAccepted: (ACCOUNT_EVENTS, _A + "OrderAccepted"),
    OrderFilled: (ACCOUNT_EVENTS, _A + "OrderFilled"),
    OrderReduced: (ACCOUNT_EVENTS, _A + "OrderReduced"),
    OrderClosed: (ACCOUNT_EVENTS, _A + "OrderClosed"),
    OrderPlaced: (ACCOUNT_EVENTS, _A + "OrderPlaced"),
    DayTradeDecided: (ACCOUNT_EVENTS, _A + "DayTradeDecided"),
    PendingExpired: (ACCOUNT_EVENTS, _A + "PendingExpired"),
    TriggerFired: (ACCOUNT_EVENTS, _A + "TriggerFired"),
    QuoteTicked: (ACCOUNT_EVENTS, _A + "QuoteTicked"),
    MatchPlaceOrder: (MATCH_COMMANDS, _M + "PlaceOrder"),
    MatchCancelOrder: (MATCH_COMMANDS, _M + "CancelOrder"),
    MatchReduceOrder: (MATCH_COMMANDS, _M + "ReduceOrder"),
    MatchReplaceOrder: (MATCH_COMMANDS, _M + "ReplaceOrder"),
}


class AcceptedTerms(NamedTuple):
    """What a retried client_order_id is answered with: the original acceptance, order_id to
    hold (kept in the account, and in snapshots as a list in this order)."""

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    price: int | None
    qty: int
    tif: str
    expire_ts: int | None
    post_only: bool
    stp: str
    budget: int | None
    hold: int


# Builds a record from its values without the NamedTuple constructor's Python-level __new__ (a
# third of the cost). It skips the constructor's count check: a record of the wrong length fails
# when it is encoded, and tests/unit/test_ledger_decisions.py builds every record here.
_new = tuple.__new__


# -- cash and shares ----------------------------------------------------------------------------
def rejected(
    env: Envelope, command: str, reason: str, order_id: int | None = None, duplicate: bool = False
) -> Decision:
    return env["key"], _new(CommandRejected, (env, command, reason, order_id, duplicate))


def account_created(env: Envelope, acct: Account, api_key_hash: str) -> Decision:
    return acct.id, _new(AccountCreated, (env, acct.cash, api_key_hash))


def cash_deposited(env: Envelope, acct: Account, amount: int) -> Decision:
    return acct.id, _new(CashDeposited, (env, amount, acct.cash))


def cash_withdrawn(env: Envelope, acct: Account, amount: int) -> Decision:
    return acct.id, _new(CashWithdrawn, (env, amount, acct.cash))


def symbol_created(env: Envelope, symbol: str, tick: int, lot: int, created: bool) -> Decision:
    return symbol, _new(SymbolCreated, (env, tick, lot, created))


def shares_issued(env: Envelope, acct: Account, symbol: str, qty: int, pos: Position) -> Decision:
    return acct.id, _new(SharesIssued, (env, symbol, qty, pos.available))


# -- orders -------------------------------------------------------------------------------------
def accepted(
    env: Envelope, order: Order, client_order_id: str, budget: int | None, replaces: int | None
) -> Decision:
    acct, pos = order.account, order.position
    tif, expire_ts, post_only, stp = order.terms
    record = _new(
        OrderAccepted,
        (
            env,
            order.id,
            client_order_id,
            order.symbol,
            SIDES[order.buy],
            order.price,
            order.remaining,
            tif,
            expire_ts,
            post_only,
            stp,
            budget,
            order.hold,
            replaces,
            False,
            acct.cash,
            acct.held,
            pos.available,
            pos.held,
        ),
    )
    return acct.id, record


def accepted_terms(r: OrderAccepted) -> AcceptedTerms:
    """The part of an acceptance a retry of its client_order_id is answered with."""
    return _new(
        AcceptedTerms,
        (
            r.order_id,
            r.client_order_id,
            r.symbol,
            r.side,
            r.price,
            r.qty,
            r.tif,
            r.expire_ts,
            r.post_only,
            r.stp,
            r.budget,
            r.hold,
        ),
    )


def duplicate(env: Envelope, acct: Account, original: str | AcceptedTerms) -> Decision:
    """The original decision again, with the retry's envelope and the balances as they are now."""
    if type(original) is str:
        return rejected(env, "PlaceOrder", original, duplicate=True)
    t = original
    pos = acct.positions.get(t.symbol) or Position()
    record = _new(
        OrderAccepted,
        (
            env,
            t.order_id,
            t.client_order_id,
            t.symbol,
            t.side,
            t.price,
            t.qty,
            t.tif,
            t.expire_ts,
            t.post_only,
            t.stp,
            t.budget,
            t.hold,
            None,
            True,
            acct.cash,
            acct.held,
            pos.available,
            pos.held,
        ),
    )
    return acct.id, record


def filled(env: Envelope, order: Order, rec: dict, released: int) -> Decision:
    """rec: the matcher's Fill, already settled on order (its price, qty, seq and role)."""
    acct, pos = order.account, order.position
    record = _new(
        OrderFilled,
        (
            env,
            order.id,
            order.symbol,
            rec["side"],
            rec["price"],
            rec["qty"],
            order.remaining,
            rec["seq"],
            rec["role"],
            released,
            order.hold,
            acct.cash,
            acct.held,
            pos.available,
            pos.held,
        ),
    )
    return acct.id, record


def reduced(env: Envelope, order: Order, qty: int, released: int) -> Decision:
    acct, pos = order.account, order.position
    record = _new(
        OrderReduced,
        (
            env,
            order.id,
            order.symbol,
            SIDES[order.buy],
            qty,
            order.remaining,
            released,
            order.hold,
            acct.cash,
            acct.held,
            pos.available,
            pos.held,
        ),
    )
    return acct.id, record


def closed(env: Envelope, order: Order, reason: str, released: int) -> Decision:
    acct, pos = order.account, order.position
    record = _new(
        OrderClosed,
        (
            env,
            order.id,
            order.symbol,
            SIDES[order.buy],
            order.remaining,
            reason,
            released,
            acct.cash,
            acct.held,
            pos.available,
            pos.held,
        ),
    )
    return acct.id, record


def placed(env: Envelope, rec: dict) -> Decision:
    """The matcher's OrderPlaced, passed to the account as it came."""
    record = _new(
        OrderPlaced,
        (
            env,
            rec["order_id"],
            rec["symbol"],
            rec["side"],
            rec["open_qty"],
            rec["seq"],
            rec["settlements"],
        ),
    )
    return env["key"], record


# -- day trading --------------------------------------------------------------------------------
def day_trade_decided(
    env: Envelope, rec: dict, outcome: TradeOutcome, cash: int, held: int
) -> Decision:
    """rec: the DayTrade command; cash and held: the account's after (0 without one)."""
    ok, code, message, shares, price, funds, cash_change, summary, symbol = outcome
    record = _new(
        DayTradeDecided,
        (
            env,
            rec["command"],
            rec["user"],
            rec["txn"],
            symbol or rec["symbol"],
            rec["amount"],
            rec["trigger"],
            rec["filename"],
            rec["quote"],
            ok,
            code,
            message,
            shares,
            price,
            funds,
            cash_change,
            cash,
            held,
            summary,
        ),
    )
    return env["key"], record


def pending_expired(
    env: Envelope, acct: Account, side: str, entry: Any, cash_change: int
) -> Decision:
    """entry: a trading.Pending (symbol, shares, price, funds, ts, txn)."""
    values = (env, acct.id, side, entry.symbol, entry.shares, entry.price, entry.funds, entry.txn)
    return acct.id, _new(PendingExpired, (*values, cash_change, acct.cash, acct.held))


def trigger_fired(
    env: Envelope,
    acct: Account,
    side: str,
    symbol: str,
    trade: tuple[int, int, int],
    txn: int,
    cash_change: int,
) -> Decision:
    """trade: (shares, price, funds) of the execution; env: the tick's."""
    values = (env, acct.id, side, symbol, *trade, txn, cash_change, acct.cash, acct.held)
    return acct.id, _new(TriggerFired, values)


def quote_ticked(env: Envelope, quote: dict) -> Decision:
    return env["key"], _new(QuoteTicked, (env, quote))


# -- to the matcher -----------------------------------------------------------------------------
def forward_place(env: Envelope, order: Order, budget: int | None, lot: int) -> Decision:
    tif, expire_ts, post_only, stp = order.terms
    record = _new(
        MatchPlaceOrder,
        (
            env,
            order.account.id,
            order.id,
            SIDES[order.buy],
            order.price,
            order.remaining,
            tif,
            expire_ts,
            post_only,
            stp,
            budget,
            lot,
        ),
    )
    return order.symbol, record


def forward_cancel(env: Envelope, order: Order) -> Decision:
    return order.symbol, _new(MatchCancelOrder, (env, order.account.id, order.id))


def forward_reduce(env: Envelope, order: Order, qty: int) -> Decision:
    return order.symbol, _new(MatchReduceOrder, (env, order.account.id, order.id, qty))


def forward_replace(env: Envelope, old: Order, new: Order) -> Decision:
    record = _new(
        MatchReplaceOrder, (env, old.account.id, old.id, new.id, new.price, new.remaining)
    )
    return old.symbol, record
