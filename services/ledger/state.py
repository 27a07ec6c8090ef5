"""The ledger's pure core: accounts, holds, order ids and settlement, decided in log order.

One ``Ledger`` holds the state of one ``ledger.commands`` partition. ``apply(name, record)`` takes a
decoded record (its Avro fullname and its fields) and returns the decisions it causes (see
``decisions``). No clock, no randomness, no I/O: the same input gives the same decisions and the
same state.

Money never overflows a signed 64-bit long: each partition admits at most ``MAX_UNITS // P`` cash
(initial balances + deposits - withdrawals) and as many units of each symbol, so the whole
exchange holds at most ``MAX_UNITS`` of either and no balance, hold or trade can pass it.
The rules, and every choice the issue left open, are in docs/ledger.md.
"""

from __future__ import annotations

from collections.abc import Callable

from services.common.money import MAX_UNITS

from . import decisions as d
from . import trading
from .accounts import SIDES, Account, Order
from .decisions import Decision, rejected
from .trading import Trader

L = "marketlog.ledger."
NOTIONAL_TOO_LARGE = "price × quantity exceeds the 64-bit cash range"
# the close reasons that answer a forwarded cancel, reduce (to zero) or replace; the matcher's
# expiries and self-trade cancels carry the id of whichever command set them off
ANSWERS = frozenset(("USER", "REPLACED"))


class Ledger:
    """The state of one ledger partition and the rules that change it."""

    def __init__(self, partition: int = 0, partitions: int = 1) -> None:
        self.partition = partition
        self.partitions = partitions
        self.supply_limit = MAX_UNITS // partitions  # this partition's share of the 64-bit range
        self.accounts: dict[str, Account] = {}
        self.orders: dict[int, Order] = {}
        self.symbols: dict[str, tuple[int, int]] = {}  # symbol -> (tick, lot)
        self.placed = 0  # orders accepted so far: the n of the next order id
        self.cash_supply = 0  # initial balances + deposits - withdrawals on this partition
        self.share_supply: dict[str, int] = {}  # shares issued per symbol on this partition
        # command_id -> record name of a cancel/reduce/replace the matcher has not answered yet
        self.forwarded: dict[str, str] = {}
        # day trading (trading.py): each account's trader, and the cash that went to and came
        # from the outside market, so cash stays conserved: supply - paid + received = Σ cash
        self.traders: dict[str, Trader] = {}
        self.paid_to_market = 0
        self.received_from_market = 0
        self.market_shares: dict[str, int] = {}  # day-trading shares bought - sold, per symbol

    def cash_total(self) -> int:
        """All cash of this partition's accounts, available and held (by conservation)."""
        return self.cash_supply - self.paid_to_market + self.received_from_market

    def fits(self, cash_in: int) -> bool:
        """Whether cash_in more keeps the partition within its share of the 64-bit range."""
        return self.cash_total() + cash_in <= self.supply_limit

    def trader(self, account_id: str) -> Trader:
        trader = self.traders.get(account_id)
        if trader is None:
            trader = self.traders[account_id] = Trader()
        return trader

    def handles(self, name: str) -> bool:
        return name in HANDLERS

    def apply(self, name: str, record: dict) -> list[Decision]:
        """The decisions one input record causes (none for a record the ledger does not know)."""
        handler = HANDLERS.get(name)
        return handler(self, record) if handler is not None else []

    # -- cash and shares --------------------------------------------------------------------
    def _create_account(self, rec: dict) -> list[Decision]:
        env = rec["envelope"]
        account_id, balance = env["key"], rec["balance"]
        reason = None
        if not account_id:
            reason = "account id must not be empty"
        elif account_id in self.accounts:
            reason = "account already exists"
        elif balance < 0:
            reason = "initial balance must not be negative"
        elif not self.fits(balance):
            reason = "initial balance would exceed the exchange's cash limit"
        if reason:
            return [rejected(env, "CreateAccount", reason)]
        self.accounts[account_id] = Account(account_id, balance)
        self.cash_supply += balance
        return [d.account_created(env, self.accounts[account_id], rec["api_key_hash"])]

    def _deposit(self, rec: dict) -> list[Decision]:
        env, amount = rec["envelope"], rec["amount"]
        acct = self.accounts.get(env["key"])
        reason = None
        if acct is None:
            reason = "unknown account"
        elif amount <= 0:
            reason = "amount must be positive"
        elif not self.fits(amount):
            reason = "deposit would exceed the exchange's cash limit"
        if reason:
            return [rejected(env, "Deposit", reason)]
        acct.cash += amount
        self.cash_supply += amount
        return [d.cash_deposited(env, acct, amount)]

    def _withdraw(self, rec: dict) -> list[Decision]:
        env, amount = rec["envelope"], rec["amount"]
        acct = self.accounts.get(env["key"])
        reason = None
        if acct is None:
            reason = "unknown account"
        elif amount <= 0:
            reason = "amount must be positive"
        elif amount > acct.cash:
            reason = f"insufficient funds: withdrawing {amount}, available {acct.cash}"
        if reason:
            return [rejected(env, "Withdraw", reason)]
        acct.cash -= amount
        self.cash_supply -= amount
        return [d.cash_withdrawn(env, acct, amount)]

    def _create_symbol(self, rec: dict) -> list[Decision]:
        env = rec["envelope"]
        symbol, tick, lot = env["key"], rec["tick"], rec["lot"]
        reason = None
        if not symbol:
            reason = "symbol must not be empty"
        elif tick <= 0:
            reason = "tick size must be positive"
        elif lot <= 0:
            reason = "lot size must be positive"
        created = reason is None and symbol not in self.symbols
        if created:
            self.symbols[symbol] = (tick, lot)
        if self.partition != 0:  # every partition lists it; partition 0 alone answers
            return []
        if reason:
            return [rejected(env, "CreateSymbol", reason)]
        tick, lot = self.symbols[symbol]  # an existing listing keeps its sizes
        return [d.symbol_created(env, symbol, tick, lot, created)]

    def _issue_shares(self, rec: dict) -> list[Decision]:
        env, symbol, qty = rec["envelope"], rec["symbol"], rec["qty"]
        acct = self.accounts.get(env["key"])
        issued = self.share_supply.get(symbol, 0)
        reason = None
        if acct is None:
            reason = "unknown account"
        elif symbol not in self.symbols:
            reason = f"unknown symbol {symbol}"
        elif qty <= 0:
            reason = "quantity must be positive"
        elif issued + qty > self.supply_limit:
            reason = f"issue would exceed the share limit of {symbol}"
        if reason:
            return [rejected(env, "IssueShares", reason)]
        pos = acct.position(symbol)
        pos.available += qty
        self.share_supply[symbol] = issued + qty
        return [d.shares_issued(env, acct, symbol, qty, pos)]

    # -- orders -----------------------------------------------------------------------------
    def _place_order(self, rec: dict) -> list[Decision]:
        env = rec["envelope"]
        acct = self.accounts.get(env["key"])
        if acct is None:
            return [rejected(env, "PlaceOrder", "unknown account")]
        client_order_id = rec["client_order_id"]
        if client_order_id and client_order_id in acct.client_orders:
            return [d.duplicate(env, acct, acct.client_orders[client_order_id])]
        hold = self._check_place(rec, acct)
        if type(hold) is str:
            if client_order_id:
                acct.client_orders[client_order_id] = hold
            return [rejected(env, "PlaceOrder", hold)]
        symbol, price, tif, budget = rec["symbol"], rec["price"], rec["tif"], rec["budget"]
        if price is None and tif == "GTC":
            tif = "IOC"  # the schema's default; a market order never rests
        terms = (tif, rec["expire_ts"], rec["post_only"], rec["stp"])
        order = self._open(acct, symbol, rec["side"] == "BUY", price, rec["qty"], hold, terms)
        accept = d.accepted(env, order, client_order_id, budget, None)
        if client_order_id:  # what a retry is answered with
            _, acceptance = accept
            acct.client_orders[client_order_id] = d.accepted_terms(acceptance)
        return [accept, d.forward_place(env, order, budget, self.symbols[symbol][1])]

    def _check_place(self, rec: dict, acct: Account) -> str | int:
        """A rejection reason, or the hold an acceptable order takes."""
        symbol, price, qty, tif = rec["symbol"], rec["price"], rec["qty"], rec["tif"]
        spec = self.symbols.get(symbol)
        if spec is None:
            return f"unknown symbol {symbol}"
        reason = check_size(price, qty, spec)
        if reason:
            return reason
        expire_ts = rec["expire_ts"]
        if tif == "GTD":
            if expire_ts is None:
                return "a GTD order needs expire_ts"
            if expire_ts <= rec["envelope"]["ts"]:
                return "expire_ts is not after the order's time"
        elif expire_ts is not None:
            return "expire_ts applies to GTD orders only"
        buy, budget = rec["side"] == "BUY", rec["budget"]
        if price is None:
            if rec["post_only"]:
                return "a post-only order needs a price"
            if tif == "GTD":
                return "a market order cannot rest: use IOC or FOK"
            if budget is not None and not buy:
                return "budget applies to market buys only"
            if buy and (budget is None or budget <= 0):
                return "a market buy needs a positive budget"
            hold = budget if buy else qty
        else:
            if budget is not None:
                return "budget applies to market buys only"
            if rec["post_only"] and (tif == "IOC" or tif == "FOK"):
                return "a post-only order must rest: use GTC or GTD"
            notional = price * qty
            if notional > MAX_UNITS:
                return NOTIONAL_TOO_LARGE
            hold = notional if buy else qty
        return check_funds(acct, symbol, buy, hold) or hold

    def _open(
        self,
        acct: Account,
        symbol: str,
        buy: bool,
        price: int | None,
        qty: int,
        hold: int,
        terms: tuple[str, int | None, bool, str],
    ) -> Order:
        """Assign the next order id, take the hold and keep the order as open."""
        order_id = self.placed * self.partitions + self.partition + 1
        self.placed += 1
        order = Order(order_id, acct, symbol, buy, price, qty, hold, terms)
        if buy:
            acct.cash -= hold
            acct.held += hold
        else:
            order.position.available -= hold
            order.position.held += hold
        self.orders[order_id] = order
        return order

    def _owned(self, env: dict, order_id: int) -> Order | None:
        """The account's open order, or None: another account's order is as good as unknown."""
        order = self.orders.get(order_id)
        if order is None or order.account.id != env["key"]:
            return None
        return order

    def _cancel_order(self, rec: dict) -> list[Decision]:
        env, order_id = rec["envelope"], rec["order_id"]
        order = self._owned(env, order_id)
        if order is None:
            return [rejected(env, "CancelOrder", f"unknown order {order_id}", order_id)]
        self.forwarded[env["command_id"]] = "CancelOrder"
        return [d.forward_cancel(env, order)]

    def _reduce_order(self, rec: dict) -> list[Decision]:
        env, order_id, qty = rec["envelope"], rec["order_id"], rec["qty"]
        order = self._owned(env, order_id)
        reason = None
        if order is None:
            reason = f"unknown order {order_id}"
        elif order.price is None:
            reason = "a market order cannot be reduced"
        elif qty <= 0:
            reason = "quantity must be positive"
        elif qty % self.symbols[order.symbol][1]:
            reason = f"quantity {qty} is not a multiple of the lot size"
        if reason:
            return [rejected(env, "ReduceOrder", reason, order_id)]
        self.forwarded[env["command_id"]] = "ReduceOrder"
        return [d.forward_reduce(env, order, qty)]

    def _replace_order(self, rec: dict) -> list[Decision]:
        env, order_id, price, qty = rec["envelope"], rec["order_id"], rec["price"], rec["qty"]
        old = self._owned(env, order_id)
        if old is None:
            reason = f"unknown order {order_id}"
        elif old.price is None:
            reason = "a market order cannot be replaced"
        else:
            reason = check_size(price, qty, self.symbols[old.symbol])
            if reason is None and price * qty > MAX_UNITS:
                reason = NOTIONAL_TOO_LARGE
            if reason is None:  # the old order keeps its hold until the matcher closes it
                hold = price * qty if old.buy else qty
                reason = check_funds(old.account, old.symbol, old.buy, hold)
        if reason:
            return [rejected(env, "ReplaceOrder", reason, order_id)]
        new = self._open(old.account, old.symbol, old.buy, price, qty, hold, old.terms)
        self.forwarded[env["command_id"]] = "ReplaceOrder"
        return [d.accepted(env, new, "", None, order_id), d.forward_replace(env, old, new)]

    # -- settlements from the matcher -------------------------------------------------------
    def _fill(self, rec: dict) -> list[Decision]:
        env, order_id, price, qty = rec["envelope"], rec["order_id"], rec["price"], rec["qty"]
        order = self.orders.get(order_id)
        reason = f"unknown order {order_id}" if order is None else fill_problem(order, rec)
        if reason:
            return [rejected(env, "Fill", reason, order_id)]
        acct, pos = order.account, order.position
        cost = price * qty
        released = 0
        if order.buy:
            # this part held limit x qty (a market buy: the cost itself); the saving goes back
            taken = cost if order.price is None else order.price * qty
            released = taken - cost
            order.hold -= taken
            acct.held -= taken
            acct.cash += released
            pos.available += qty
        else:
            order.hold -= qty
            pos.held -= qty
            acct.cash += cost
        order.remaining -= qty
        if order.remaining == 0:  # filled: what a market buy did not spend goes back
            released += order.hold
            order.release(order.hold)
            del self.orders[order_id]
        return [d.filled(env, order, rec, released)]

    def _order_closed(self, rec: dict) -> list[Decision]:
        env, order_id = rec["envelope"], rec["order_id"]
        if rec["reason"] in ANSWERS:  # not an expiry or a self-trade the same command set off
            self.forwarded.pop(env["command_id"], None)
        order = self.orders.get(order_id)
        if order is None:
            return [rejected(env, "OrderClosed", f"unknown order {order_id}", order_id)]
        return [self._close(env, order, rec["reason"])]

    def _close(self, env: dict, order: Order, reason: str) -> Decision:
        released = order.hold
        order.release(released)
        del self.orders[order.id]
        return d.closed(env, order, reason, released)

    def _order_reduced(self, rec: dict) -> list[Decision]:
        env, order_id, qty = rec["envelope"], rec["order_id"], rec["qty"]
        self.forwarded.pop(env["command_id"], None)
        order = self.orders.get(order_id)
        reason = None
        if order is None:
            reason = f"unknown order {order_id}"
        elif qty <= 0 or qty > order.remaining:
            reason = f"reduction of {qty} outside the open quantity {order.remaining}"
        if reason:
            return [rejected(env, "OrderReduced", reason, order_id)]
        order.remaining -= qty
        if order.remaining == 0:
            released = order.hold
        elif not order.buy:
            released = qty
        else:  # a market buy's budget is not per unit: it goes back when the order ends
            released = 0 if order.price is None else order.price * qty
        order.release(released)
        if order.remaining == 0:
            del self.orders[order_id]
        return [d.reduced(env, order, qty, released)]

    def _order_placed(self, rec: dict) -> list[Decision]:
        """The matcher is done with an arriving order (every settlement it caused came before,
        on this or another partition): tell the account, so its gateway can answer."""
        return [d.placed(rec["envelope"], rec)]

    def _match_rejected(self, rec: dict) -> list[Decision]:
        env, order_id, new_order_id = rec["envelope"], rec["order_id"], rec["new_order_id"]
        command = self.forwarded.pop(env["command_id"], None)
        if command is None:  # answers no cancel/reduce/replace: a placement (a duplicate id)
            command = "ReplaceOrder" if new_order_id is not None else "PlaceOrder"
        out = [rejected(env, command, rec["reason"], order_id)]
        new = self.orders.get(new_order_id) if new_order_id is not None else None
        if new is not None:  # a refused replace: the new order never reached the book
            out.append(self._close(env, new, "REJECTED"))
        return out


# record name -> rule; a class-level table, so a Ledger holds no reference cycle to itself
HANDLERS: dict[str, Callable[[Ledger, dict], list[Decision]]] = {
    L + "CreateAccount": Ledger._create_account,
    L + "Deposit": Ledger._deposit,
    L + "Withdraw": Ledger._withdraw,
    L + "CreateSymbol": Ledger._create_symbol,
    L + "IssueShares": Ledger._issue_shares,
    L + "PlaceOrder": Ledger._place_order,
    L + "CancelOrder": Ledger._cancel_order,
    L + "ReduceOrder": Ledger._reduce_order,
    L + "ReplaceOrder": Ledger._replace_order,
    L + "Fill": Ledger._fill,
    L + "OrderClosed": Ledger._order_closed,
    L + "OrderReduced": Ledger._order_reduced,
    L + "MatchRejected": Ledger._match_rejected,
    L + "OrderPlaced": Ledger._order_placed,
    L + "DayTrade": trading.day_trade,
    L + "QuoteTick": trading.quote_tick,
}


# -- checks ------------------------------------------------------------------------------------
def check_size(price: int | None, qty: int, spec: tuple[int, int]) -> str | None:
    tick, lot = spec
    if qty <= 0:
        return "quantity must be positive"
    if qty % lot:
        return f"quantity {qty} is not a multiple of the lot size {lot}"
    if price is not None:
        if price <= 0:
            return "price must be positive"
        if price % tick:
            return f"price {price} is not a multiple of the tick size {tick}"
    return None


def check_funds(acct: Account, symbol: str, buy: bool, hold: int) -> str | None:
    if buy:
        if hold > acct.cash:
            return f"insufficient funds: order needs {hold}, available {acct.cash}"
        return None
    pos = acct.positions.get(symbol)
    available = pos.available if pos is not None else 0
    if hold > available:
        return f"insufficient shares: order needs {hold}, available {available}"
    return None


def fill_problem(order: Order, rec: dict) -> str | None:
    """Why a fill cannot be settled without breaking a balance (a matcher bug), or None."""
    price, qty, limit = rec["price"], rec["qty"], order.price
    if order.symbol != rec["symbol"] or SIDES[order.buy] != rec["side"]:
        return f"order {order.id} is not a {rec['side']} order of {rec['symbol']}"
    if qty <= 0 or qty > order.remaining:
        return f"fill of {qty} outside the open quantity {order.remaining}"
    if price <= 0:
        return "fill price must be positive"
    if limit is not None and (price > limit if order.buy else price < limit):
        return f"fill price {price} is beyond the order's limit {limit}"
    cost = price * qty
    if order.buy:
        if limit is None and cost > order.hold:
            return f"fill costs {cost}, more than the budget left {order.hold}"
        pos = order.position
        if pos.available + pos.held + qty > MAX_UNITS:
            return "fill would take the position beyond the 64-bit range"
    elif order.account.cash + order.account.held + cost > MAX_UNITS:
        return "fill would take the account's cash beyond the 64-bit range"
    return None
