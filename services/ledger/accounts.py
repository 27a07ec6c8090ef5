"""The ledger's records of who owns what: accounts, positions and the open orders' holds."""

from __future__ import annotations

SIDES = ("SELL", "BUY")  # indexed by Order.buy


class Position:
    """An account's shares of one symbol: free to sell, and held for open sell orders."""

    __slots__ = ("available", "held")

    def __init__(self, available: int = 0, held: int = 0) -> None:
        self.available = available
        self.held = held


class Account:
    __slots__ = ("cash", "client_orders", "held", "id", "positions")

    def __init__(self, account_id: str, cash: int) -> None:
        self.id = account_id
        self.cash = cash  # available cash, cash units
        self.held = 0  # cash held for open buy orders
        self.positions: dict[str, Position] = {}
        # client_order_id -> original decision: a rejection reason (str) or the accepted terms
        # (decisions.AcceptedTerms)
        self.client_orders: dict[str, str | tuple] = {}

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        return pos


class Order:
    """An open order as the ledger sees it: what it may still trade and what it still holds.

    hold is cash for a buy (limit x remaining; a market buy: what is left of its budget) and
    shares for a sell (remaining). terms are (tif, expire_ts, post_only, stp), kept for a replace.
    """

    __slots__ = (
        "account",
        "buy",
        "hold",
        "id",
        "position",
        "price",
        "remaining",
        "symbol",
        "terms",
    )

    def __init__(
        self,
        order_id: int,
        account: Account,
        symbol: str,
        buy: bool,
        price: int | None,
        remaining: int,
        hold: int,
        terms: tuple[str, int | None, bool, str],
    ) -> None:
        self.id = order_id
        self.account = account
        self.symbol = symbol
        self.position = account.position(symbol)  # where bought shares arrive / sold ones leave
        self.buy = buy
        self.price = price  # None: market order
        self.remaining = remaining
        self.hold = hold
        self.terms = terms

    def release(self, amount: int) -> None:
        """Give back part of the hold to the account's available cash or shares."""
        self.hold -= amount
        if self.buy:
            self.account.held -= amount
            self.account.cash += amount
        else:
            self.position.held -= amount
            self.position.available += amount
