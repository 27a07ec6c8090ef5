"""Invariants of ledger state: what tests check after every step of a ledger partition.

Per partition: no balance is negative, every open order holds exactly what its rules say, and an
account's held cash and shares are the sum of its open orders' holds. Over all partitions (only
meaningful when no settlement is in flight): cash and shares are conserved against what came in.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.ledger.state import Ledger


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
    supply = sum(ledger.cash_supply for ledger in ledgers)
    cash = sum(a.cash + a.held for ledger in ledgers for a in ledger.accounts.values())
    problems = [] if supply == cash else [f"cash: {supply} came in, accounts hold {cash}"]
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
