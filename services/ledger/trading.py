"""Day trading: the 16 commands of the course's day-trading system and its triggers, decided in
log order (docs/daytrading.md is the contract; every rule below is one of its paragraphs).

A day trader is a ledger account: the same available and held cash as exchange orders. What is
only day trading lives in the account's ``Trader``: whole shares bought from the outside market
(kept apart from exchange positions), the pending BUY/SELL stacks and the buy and sell settings.
``day_trade(ledger, rec)`` decides a ``marketlog.ledger.DayTrade``, ``quote_tick(ledger, rec)`` a
``marketlog.ledger.QuoteTick``. Pure: no clock (time is the record's ``envelope.ts``, µs), no
randomness, no I/O.

Units: cash in cash units (1 cent = 10,000), prices in price units (1 cent = 100); a whole share
is ``SHARE`` quantity units, so ``shares × price × SHARE`` is exact cash (``cost_of``), and the
only rounding is the whole-share floor (``whole_shares``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from services.common.money import QTY_SCALE, format_cash, format_price

from . import decisions as d
from .accounts import Account
from .decisions import Decision
from .decisions import TradeOutcome as Outcome

if TYPE_CHECKING:
    from .state import Ledger

WINDOW_US = 60_000_000  # a pending BUY/SELL lives 60 s of record time (the course's rule)
MAX_PENDING = 100  # live pending BUYs (and, apart, SELLs) per user
SHARE = QTY_SCALE  # quantity units of one whole share: price units × SHARE = cash units


def cost_of(shares: int, price: int) -> int:
    """Cash units of whole shares at a price in price units."""
    return shares * price * SHARE


def whole_shares(amount: int, price: int) -> int:
    """How many whole shares a cash amount buys at a price: always rounded down."""
    return amount // (price * SHARE)


class Pending:
    """A pending BUY or SELL: ``funds`` is its cost (BUY, held cash) or proceeds (SELL)."""

    __slots__ = ("funds", "price", "shares", "symbol", "ts", "txn")

    def __init__(self, symbol: str, shares: int, price: int, ts: int, txn: int) -> None:
        self.symbol = symbol
        self.shares = shares
        self.price = price
        self.funds = cost_of(shares, price)
        self.ts = ts  # record time of the BUY/SELL
        self.txn = txn


class BuySetting:
    """SET_BUY_AMOUNT's reserve (held cash), armed by SET_BUY_TRIGGER."""

    __slots__ = ("reserve", "trigger", "txn")

    def __init__(self, reserve: int, trigger: int | None = None, txn: int = 0) -> None:
        self.reserve = reserve
        self.trigger = trigger
        self.txn = txn  # of the SET_BUY_TRIGGER that last set the trigger


class SellSetting:
    """SET_SELL_AMOUNT's amount; once armed, the shares it sells at the trigger are reserved."""

    __slots__ = ("amount", "reserved", "trigger", "txn")

    def __init__(
        self, amount: int, trigger: int | None = None, reserved: int = 0, txn: int = 0
    ) -> None:
        self.amount = amount
        self.trigger = trigger
        self.reserved = reserved
        self.txn = txn


class Trader:
    """An account's day-trading side. Pending stacks are oldest first: the last is the newest."""

    __slots__ = ("buy_settings", "buys", "holdings", "sell_settings", "sells")

    def __init__(self) -> None:
        self.holdings: dict[str, int] = {}  # symbol -> whole shares free to sell (never 0)
        self.buys: list[Pending] = []
        self.sells: list[Pending] = []
        self.buy_settings: dict[str, BuySetting] = {}
        self.sell_settings: dict[str, SellSetting] = {}

    def holding(self, symbol: str) -> int:
        return self.holdings.get(symbol, 0)

    def add_shares(self, symbol: str, shares: int) -> None:
        left = self.holdings.get(symbol, 0) + shares
        if left:
            self.holdings[symbol] = left
        else:
            self.holdings.pop(symbol, None)

    def empty(self) -> bool:
        return not (
            self.holdings or self.buys or self.sells or self.buy_settings or self.sell_settings
        )


def refused(code: str, message: str) -> Outcome:
    return Outcome(False, code, message)


def popped(entry: Pending, cash_change: int = 0) -> Outcome:
    """COMMIT/CANCEL of a pending entry: the answer names the entry's symbol, shares, price."""
    shares, price, funds, symbol = entry.shares, entry.price, entry.funds, entry.symbol
    return Outcome(True, "", "", shares, price, funds, cash_change, None, symbol)


def dollars(cash: int) -> str:
    return format_cash(cash, 2)


def price_text(price: int) -> str:
    return format_price(price, 2)


# -- the ledger's entry points ----------------------------------------------------------------
def day_trade(ledger: Ledger, rec: dict) -> list[Decision]:
    """A DayTrade command: its sweep's PendingExpired decisions, then its DayTradeDecided."""
    env, command, user = rec["envelope"], rec["command"], rec["user"]
    rule = RULES.get(command)
    problem = input_problem(rec, rule)
    acct = ledger.accounts.get(user) if user else None
    out: list[Decision] = []
    if problem:
        outcome = refused("bad_input", problem)
    elif command == "DUMPLOG" and not user:  # the admin form: the whole system's log
        outcome = Outcome(True)
    elif acct is None:
        outcome, acct = _without_account(ledger, rec, user)
    else:
        trader = ledger.trader(user)
        out = sweep(env, acct, trader)
        outcome = rule.decide(ledger, rec, acct, trader)
    cash, held = (acct.cash, acct.held) if acct is not None else (0, 0)
    out.append(d.day_trade_decided(env, rec, outcome, cash, held))
    return out


def _without_account(ledger: Ledger, rec: dict, user: str) -> tuple[Outcome, Account | None]:
    """ADD creates the account; QUOTE needs none; anything else needs it."""
    command = rec["command"]
    if command == "ADD":
        acct = Account(user, 0)  # no API key: an account only day trading names
        outcome = add(ledger, rec, acct, Trader())
        if not outcome.ok:
            return outcome, None
        ledger.accounts[user] = acct
        return outcome, acct
    if command == "QUOTE":
        return Outcome(True, price=rec["quote"]["price"]), None
    return refused("unknown_user", f"unknown user {user}"), None


def sweep(env: dict, acct: Account, trader: Trader) -> list[Decision]:
    """Release every pending BUY/SELL of the user that is 60 s old at this record's time: a
    BUY's cost goes back from held to available cash, a SELL's shares back to the holding.
    Every entry is looked at: gateways' clocks may differ, so stack order is not time order."""
    now = env["ts"]
    out: list[Decision] = []
    if trader.buys and any(now - e.ts >= WINDOW_US for e in trader.buys):
        for entry in trader.buys:
            if now - entry.ts >= WINDOW_US:
                acct.held -= entry.funds
                acct.cash += entry.funds
                out.append(d.pending_expired(env, acct, "BUY", entry, entry.funds))
        trader.buys = [e for e in trader.buys if now - e.ts < WINDOW_US]
    if trader.sells and any(now - e.ts >= WINDOW_US for e in trader.sells):
        for entry in trader.sells:
            if now - entry.ts >= WINDOW_US:
                trader.add_shares(entry.symbol, entry.shares)
                out.append(d.pending_expired(env, acct, "SELL", entry, 0))
        trader.sells = [e for e in trader.sells if now - e.ts < WINDOW_US]
    return out


def input_problem(rec: dict, rule: Rule | None) -> str | None:
    """Why a DayTrade record is not one the gateway could have appended (a hostile or broken
    producer), or None. The gateway's line checks make every one of these impossible."""
    if rule is None:
        return f"unknown command {rec['command'][:40]!r}"
    user = rec["user"]
    if user != rec["envelope"]["key"]:
        return "user differs from the record's key"
    if not user and rec["command"] != "DUMPLOG":
        return "userid must not be empty"
    for field in rule.needs:
        value = rec[field]
        if value is None or value == "":
            return f"{rec['command']} needs {field}"
        if field in ("amount", "trigger") and value <= 0:
            return f"{field} must be positive"
    quote = rec["quote"]
    if "quote" in rule.needs and (quote["price"] <= 0 or quote["symbol"] != rec["symbol"]):
        return "the quote must be a positive price for the command's symbol"
    return None


# -- the commands -----------------------------------------------------------------------------
CASH_LIMIT = "deposit would exceed the exchange's cash limit"


def add(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    amount = rec["amount"]
    if not ledger.fits(amount):
        return refused("cash_limit", CASH_LIMIT)
    acct.cash += amount
    ledger.cash_supply += amount
    return Outcome(True, cash_change=amount)


def quote(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    return Outcome(True, price=rec["quote"]["price"])


def buy(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    symbol, amount, price = rec["symbol"], rec["amount"], rec["quote"]["price"]
    shares = whole_shares(amount, price)
    if shares < 1:
        return no_whole_share(amount, symbol, price)
    cost = cost_of(shares, price)
    if cost > acct.cash:
        return insufficient_funds("BUY", cost, acct.cash)
    if len(trader.buys) >= MAX_PENDING:
        return refused("too_many_pending", f"{MAX_PENDING} BUYs are already pending")
    acct.cash -= cost
    acct.held += cost
    trader.buys.append(Pending(symbol, shares, price, rec["envelope"]["ts"], rec["txn"]))
    return Outcome(True, shares=shares, price=price, funds=cost, cash_change=-cost)


def commit_buy(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    if not trader.buys:
        return refused("no_pending_buy", "no BUY in the last 60 seconds")
    entry = trader.buys.pop()
    acct.held -= entry.funds  # paid to the market
    bought(ledger, entry.symbol, entry.shares, entry.funds)
    trader.add_shares(entry.symbol, entry.shares)
    return popped(entry)


def cancel_buy(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    if not trader.buys:
        return refused("no_pending_buy", "no BUY in the last 60 seconds")
    entry = trader.buys.pop()
    acct.held -= entry.funds
    acct.cash += entry.funds
    return popped(entry, entry.funds)


def sell(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    symbol, amount, price = rec["symbol"], rec["amount"], rec["quote"]["price"]
    shares = whole_shares(amount, price)
    if shares < 1:
        return no_whole_share(amount, symbol, price)
    if shares > trader.holding(symbol):
        return insufficient_shares(symbol, shares, trader.holding(symbol))
    if len(trader.sells) >= MAX_PENDING:
        return refused("too_many_pending", f"{MAX_PENDING} SELLs are already pending")
    trader.add_shares(symbol, -shares)
    entry = Pending(symbol, shares, price, rec["envelope"]["ts"], rec["txn"])
    trader.sells.append(entry)
    return Outcome(True, shares=shares, price=price, funds=entry.funds)


def commit_sell(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    if not trader.sells:
        return refused("no_pending_sell", "no SELL in the last 60 seconds")
    if not ledger.fits(trader.sells[-1].funds):
        return refused("cash_limit", "proceeds would exceed the exchange's cash limit")
    entry = trader.sells.pop()
    acct.cash += entry.funds  # the shares went to the market at the SELL's price
    sold(ledger, entry.symbol, entry.shares, entry.funds)
    return popped(entry, entry.funds)


def cancel_sell(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    if not trader.sells:
        return refused("no_pending_sell", "no SELL in the last 60 seconds")
    entry = trader.sells.pop()
    trader.add_shares(entry.symbol, entry.shares)
    return popped(entry)


def set_buy_amount(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    symbol, amount = rec["symbol"], rec["amount"]
    setting = trader.buy_settings.get(symbol)
    armed = setting is not None and setting.trigger is not None
    if armed and whole_shares(amount, setting.trigger) < 1:
        return no_whole_share(amount, symbol, setting.trigger)
    delta = amount - (setting.reserve if setting is not None else 0)
    if delta > acct.cash:
        return insufficient_funds("SET_BUY_AMOUNT", delta, acct.cash)
    acct.cash -= delta  # a smaller amount gives cash back: the reserve is always the amount
    acct.held += delta
    if setting is None:
        setting = trader.buy_settings[symbol] = BuySetting(amount)
    setting.reserve = amount
    return Outcome(True, price=setting.trigger, funds=amount, cash_change=-delta)


def set_buy_trigger(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    symbol, trigger = rec["symbol"], rec["trigger"]
    setting = trader.buy_settings.get(symbol)
    if setting is None:
        return refused("no_buy_amount", f"no SET_BUY_AMOUNT for {symbol}")
    if whole_shares(setting.reserve, trigger) < 1:  # such a trigger could never buy anything
        return no_whole_share(setting.reserve, symbol, trigger)
    setting.trigger, setting.txn = trigger, rec["txn"]
    return Outcome(True, price=trigger, funds=setting.reserve)


def cancel_set_buy(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    symbol = rec["symbol"]
    setting = trader.buy_settings.pop(symbol, None)
    if setting is None:
        return refused("no_buy_amount", f"no SET_BUY_AMOUNT for {symbol}")
    acct.held -= setting.reserve
    acct.cash += setting.reserve
    reserve = setting.reserve
    return Outcome(True, price=setting.trigger, funds=reserve, cash_change=reserve)


def set_sell_amount(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    symbol, amount = rec["symbol"], rec["amount"]
    setting = trader.sell_settings.get(symbol)
    if setting is not None and setting.trigger is not None:  # armed: reserve what it now sells
        problem = reserve_shares(trader, symbol, setting, amount, setting.trigger)
        if problem:
            return problem
    if setting is None:  # unarmed: nothing reserved, the holding is checked at the trigger
        setting = trader.sell_settings[symbol] = SellSetting(amount)
    setting.amount = amount
    return Outcome(True, shares=setting.reserved, price=setting.trigger, funds=amount)


def set_sell_trigger(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    symbol, trigger = rec["symbol"], rec["trigger"]
    setting = trader.sell_settings.get(symbol)
    if setting is None:
        return refused("no_sell_amount", f"no SET_SELL_AMOUNT for {symbol}")
    problem = reserve_shares(trader, symbol, setting, setting.amount, trigger)
    if problem:
        return problem
    setting.trigger, setting.txn = trigger, rec["txn"]
    return Outcome(True, shares=setting.reserved, price=trigger, funds=setting.amount)


def reserve_shares(
    trader: Trader, symbol: str, setting: SellSetting, amount: int, trigger: int
) -> Outcome | None:
    """Reserve the shares ``amount`` sells at ``trigger`` (the holding pays the difference), or
    the refusal; the one rule of SET_SELL_AMOUNT (armed) and SET_SELL_TRIGGER."""
    wanted = whole_shares(amount, trigger)
    if wanted < 1:
        return no_whole_share(amount, symbol, trigger)
    more = wanted - setting.reserved
    if more > trader.holding(symbol):
        return insufficient_shares(symbol, more, trader.holding(symbol))
    trader.add_shares(symbol, -more)
    setting.reserved = wanted
    return None


def cancel_set_sell(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    symbol = rec["symbol"]
    setting = trader.sell_settings.pop(symbol, None)
    if setting is None:
        return refused("no_sell_amount", f"no SET_SELL_AMOUNT for {symbol}")
    trader.add_shares(symbol, setting.reserved)
    return Outcome(True, shares=setting.reserved, price=setting.trigger, funds=setting.amount)


def display_summary(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    return Outcome(True, summary=summary(acct, trader))


def dumplog(ledger: Ledger, rec: dict, acct: Account, trader: Trader) -> Outcome:
    return Outcome(True)  # the gateway renders the log from the projection


# -- the outside market's flows, for conservation ---------------------------------------------
def bought(ledger: Ledger, symbol: str, shares: int, cost: int) -> None:
    ledger.paid_to_market += cost
    ledger.market_shares[symbol] = ledger.market_shares.get(symbol, 0) + shares


def sold(ledger: Ledger, symbol: str, shares: int, proceeds: int) -> None:
    ledger.received_from_market += proceeds
    ledger.market_shares[symbol] = ledger.market_shares.get(symbol, 0) - shares


# -- refusals ---------------------------------------------------------------------------------
def no_whole_share(amount: int, symbol: str, price: int) -> Outcome:
    text = f"{dollars(amount)} buys no whole share of {symbol} at {price_text(price)}"
    return refused("no_whole_share", text)


def insufficient_funds(command: str, needs: int, available: int) -> Outcome:
    text = f"insufficient funds: {command} needs {dollars(needs)}, available {dollars(available)}"
    return refused("insufficient_funds", text)


def insufficient_shares(symbol: str, needs: int, holding: int) -> Outcome:
    text = f"insufficient shares of {symbol}: needs {needs}, holding {holding}"
    return refused("insufficient_shares", text)


# -- DISPLAY_SUMMARY --------------------------------------------------------------------------
def summary(acct: Account, trader: Trader) -> str:
    """The account's day-trading state as canonical JSON in ledger units, keys in the order
    docs/daytrading.md gives (the line protocol's JSON, before the gateway formats money)."""
    doc = {
        "user": acct.id,
        "cash": acct.cash,
        "cash_held": acct.held,
        "holdings": dict(sorted(trader.holdings.items())),
        "pending_buys": [_pending(e, "cost") for e in reversed(trader.buys)],
        "pending_sells": [_pending(e, "proceeds") for e in reversed(trader.sells)],
        "buy_settings": [
            {"symbol": s, "amount": b.reserve, "trigger": b.trigger}
            for s, b in sorted(trader.buy_settings.items())
        ],
        "sell_settings": [
            {"symbol": s, "amount": b.amount, "trigger": b.trigger, "reserved": b.reserved}
            for s, b in sorted(trader.sell_settings.items())
        ],
    }
    return json.dumps(doc, separators=(",", ":"))


def _pending(e: Pending, funds: str) -> dict:
    return {
        "symbol": e.symbol,
        "shares": e.shares,
        "price": e.price,
        funds: e.funds,
        "txn": e.txn,
        "expires_ts": e.ts + WINDOW_US,
    }


# -- triggers ---------------------------------------------------------------------------------
def quote_tick(ledger: Ledger, rec: dict) -> list[Decision]:
    """A tick fires the armed triggers it meets, user by user in ascending (byte) order: that
    user's sweep, the buy trigger, then the sell trigger. Partition 0 also notes the tick once."""
    env, q = rec["envelope"], rec["quote"]
    symbol, price = q["symbol"], q["price"]
    if price <= 0 or symbol != env["key"]:  # not a tick the gateway could have appended
        return []
    out = [d.quote_ticked(env, q)] if ledger.partition == 0 else []
    for user in sorted(ledger.traders):
        trader = ledger.traders[user]
        buy_set = trader.buy_settings.get(symbol)
        sell_set = trader.sell_settings.get(symbol)
        buy_met = buy_set is not None and buy_set.trigger is not None and price <= buy_set.trigger
        sell_met = (
            sell_set is not None
            and sell_set.trigger is not None
            and price >= sell_set.trigger
            and ledger.fits(cost_of(sell_set.reserved, price))
        )
        if not (buy_met or sell_met):
            continue
        acct = ledger.accounts[user]
        out += sweep(env, acct, trader)
        if buy_met:
            out.append(fire_buy(ledger, env, acct, trader, symbol, price))
        if sell_met:
            out.append(fire_sell(ledger, env, acct, trader, symbol, price))
    return out


def fire_buy(
    ledger: Ledger, env: dict, acct: Account, trader: Trader, symbol: str, price: int
) -> Decision:
    """Buy what the reserve buys at the tick's price; the unspent rest goes back to cash."""
    setting = trader.buy_settings.pop(symbol)
    shares = whole_shares(setting.reserve, price)  # ≥ 1: reserve // trigger ≥ 1, price ≤ trigger
    cost = cost_of(shares, price)
    acct.held -= setting.reserve
    acct.cash += setting.reserve - cost
    bought(ledger, symbol, shares, cost)
    trader.add_shares(symbol, shares)
    trade = (shares, price, cost)
    return d.trigger_fired(env, acct, "BUY", symbol, trade, setting.txn, setting.reserve - cost)


def fire_sell(
    ledger: Ledger, env: dict, acct: Account, trader: Trader, symbol: str, price: int
) -> Decision:
    """Sell exactly the reserved shares at the tick's price."""
    setting = trader.sell_settings.pop(symbol)
    proceeds = cost_of(setting.reserved, price)
    acct.cash += proceeds
    sold(ledger, symbol, setting.reserved, proceeds)
    trade = (setting.reserved, price, proceeds)
    return d.trigger_fired(env, acct, "SELL", symbol, trade, setting.txn, proceeds)


# -- the rule table ---------------------------------------------------------------------------
class Rule(NamedTuple):
    decide: Callable[[Ledger, dict, Account, Trader], Outcome]
    needs: tuple[str, ...]  # the record's fields this command must have


RULES: dict[str, Rule] = {
    "ADD": Rule(add, ("amount",)),
    "QUOTE": Rule(quote, ("symbol", "quote")),
    "BUY": Rule(buy, ("symbol", "amount", "quote")),
    "COMMIT_BUY": Rule(commit_buy, ()),
    "CANCEL_BUY": Rule(cancel_buy, ()),
    "SELL": Rule(sell, ("symbol", "amount", "quote")),
    "COMMIT_SELL": Rule(commit_sell, ()),
    "CANCEL_SELL": Rule(cancel_sell, ()),
    "SET_BUY_AMOUNT": Rule(set_buy_amount, ("symbol", "amount")),
    "SET_BUY_TRIGGER": Rule(set_buy_trigger, ("symbol", "trigger")),
    "CANCEL_SET_BUY": Rule(cancel_set_buy, ("symbol",)),
    "SET_SELL_AMOUNT": Rule(set_sell_amount, ("symbol", "amount")),
    "SET_SELL_TRIGGER": Rule(set_sell_trigger, ("symbol", "trigger")),
    "CANCEL_SET_SELL": Rule(cancel_set_sell, ("symbol",)),
    "DISPLAY_SUMMARY": Rule(display_summary, ()),
    "DUMPLOG": Rule(dumplog, ("filename",)),
}
