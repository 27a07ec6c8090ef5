"""Invariants of ledger state: what tests check after every step of a ledger partition.

Per partition: no balance is negative, every open order holds exactly what its rules say, and an
account's held cash is the sum of its open orders' holds, its pending BUYs and its buy reserves
(day trading), held shares the sum of its sell orders'; every trader's state is well formed; and
day-trading shares are conserved: bought − sold from the market = holdings + pending SELLs +
reserved shares. Over all partitions (only meaningful when no settlement is in flight): cash and
shares are conserved against what came in (cash in − out − paid to the day-trading market +
received from it = Σ available + held).
"""

from __future__ import annotations

from collections.abc import Iterable

from services.ledger.state import Ledger
from services.ledger.trading import MAX_PENDING, Trader, cost_of, whole_shares


def partition_problems(ledger: Ledger) -> list[str]:
    problems: list[str] = []
    held_cash: dict[str, int] = {}
    held_shares: dict[tuple[str, str], int] = {}
    for order in ledger.orders.values():
        problems += order_problems(order)
        account = order.account.id
        if order.buy:
            held_cash[account] = held_cash.get(account, 0) + order.hold
        else:
            key = (account, order.symbol)
            held_shares[key] = held_shares.get(key, 0) + order.hold
    for account, trader in ledger.traders.items():
        held_cash[account] = held_cash.get(account, 0) + trader_holds(trader)
        problems += [f"{account}: {p}" for p in trader_problems(trader)]
    problems += market_share_problems(ledger)
    for acct in ledger.accounts.values():
        if acct.cash < 0 or acct.held != held_cash.get(acct.id, 0):
            problems.append(
                f"{acct.id}: cash {acct.cash}, held {acct.held} (orders hold "
                f"{held_cash.get(acct.id, 0)})"
            )
        for symbol, pos in acct.positions.items():
            if pos.available < 0 or pos.held != held_shares.get((acct.id, symbol), 0):
                problems.append(f"{acct.id} {symbol}: available {pos.available}, held {pos.held}")
    return problems


def trader_holds(trader: Trader) -> int:
    """The cash a trader's pending BUYs and buy reserves hold."""
    return sum(e.funds for e in trader.buys) + sum(b.reserve for b in trader.buy_settings.values())


def trader_problems(t: Trader) -> list[str]:
    problems = [f"holding {s}: {n}" for s, n in t.holdings.items() if n <= 0]
    if len(t.buys) > MAX_PENDING or len(t.sells) > MAX_PENDING:
        problems.append(f"{len(t.buys)} pending BUYs, {len(t.sells)} pending SELLs")
    for e in t.buys + t.sells:
        if e.shares < 1 or e.price <= 0 or e.funds != cost_of(e.shares, e.price):
            problems.append(f"pending {e.symbol} txn {e.txn}: {e.shares} at {e.price}")
    for s, b in t.buy_settings.items():
        if b.reserve <= 0 or (b.trigger is not None and whole_shares(b.reserve, b.trigger) < 1):
            problems.append(f"buy setting {s}: reserve {b.reserve}, trigger {b.trigger}")
    for s, b in t.sell_settings.items():
        want = 0 if b.trigger is None else whole_shares(b.amount, b.trigger)
        if b.reserved != want or (b.trigger is not None and want < 1):
            problems.append(f"sell setting {s}: {b.reserved} reserved, its rule says {want}")
    return problems


def market_share_problems(ledger: Ledger) -> list[str]:
    """Day-trading shares bought − sold per symbol = holdings + pending SELLs + reserved."""
    owned: dict[str, int] = {}
    for t in ledger.traders.values():
        for symbol, n in t.holdings.items():
            owned[symbol] = owned.get(symbol, 0) + n
        for e in t.sells:
            owned[e.symbol] = owned.get(e.symbol, 0) + e.shares
        for symbol, b in t.sell_settings.items():
            owned[symbol] = owned.get(symbol, 0) + b.reserved
    flows = {s: n for s, n in ledger.market_shares.items() if n}
    if flows != {s: n for s, n in owned.items() if n}:
        return [f"day-trading shares: bought - sold {flows}, owned {owned}"]
    return []


def order_problems(order) -> list[str]:
    if order.remaining <= 0:
        return [f"order {order.id} is open with remaining {order.remaining}"]
    if not order.buy:
        expected = order.remaining
    elif order.price is not None:
        expected = order.price * order.remaining
    elif order.hold >= 0:  # a market buy holds what is left of its budget
        return []
    else:
        expected = 0
    if order.hold != expected:
        return [f"order {order.id} holds {order.hold}, its rules say {expected}"]
    return []


def conservation_problems(ledgers: Iterable[Ledger]) -> list[str]:
    """Cash and shares that came in (net of withdrawals) equal what the accounts hold."""
    ledgers = list(ledgers)
    supply = sum(ledger.cash_total() for ledger in ledgers)
    cash = sum(a.cash + a.held for ledger in ledgers for a in ledger.accounts.values())
    problems = [] if supply == cash else [f"cash: {supply} came in (net), accounts hold {cash}"]
    issued: dict[str, int] = {}
    owned: dict[str, int] = {}
    for ledger in ledgers:
        for symbol, qty in ledger.share_supply.items():
            issued[symbol] = issued.get(symbol, 0) + qty
        for acct in ledger.accounts.values():
            for symbol, pos in acct.positions.items():
                owned[symbol] = owned.get(symbol, 0) + pos.available + pos.held
    for symbol in sorted(set(issued) | set(owned)):
        if issued.get(symbol, 0) != owned.get(symbol, 0):
            problems.append(
                f"{symbol}: {issued.get(symbol, 0)} issued, {owned.get(symbol, 0)} owned"
            )
    return problems
