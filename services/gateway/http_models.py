"""The HTTP API's request and response bodies, and their validation into exchange units. Pure.

Amounts travel as decimal strings (never JSON numbers, so no float touches them) and are parsed
with services.common.money: too many decimals, a sign where none belongs or zero where a positive
amount is needed are refused with a message that says which field and why.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.common.money import (
    AmountError,
    format_cash,
    format_price,
    format_qty,
    parse_cash,
    parse_price,
    parse_qty,
)

from .commands import OrderSpec

DECIMAL = r"^[+-]?\d{1,30}(\.\d{1,30})?$"
ACCOUNT = r"^[0-9]{1,32}$"
SYMBOL = r"^[A-Za-z0-9]{1,32}$"
CLIENT_ORDER_ID = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_ID = 2**63 - 1

Amount = Field(pattern=DECIMAL, max_length=62, examples=["100.25"])


class InvalidRequest(ValueError):
    """A well-typed body that still cannot be an order (or other command); 422 for the caller."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class Tif(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"


class Stp(StrEnum):
    NONE = "NONE"
    CANCEL_NEWEST = "CANCEL_NEWEST"
    CANCEL_OLDEST = "CANCEL_OLDEST"
    CANCEL_BOTH = "CANCEL_BOTH"
    DECREMENT_AND_CANCEL = "DECREMENT_AND_CANCEL"


HTTP_STP_DEFAULT = Stp.CANCEL_NEWEST


# -- requests --------------------------------------------------------------------------------
class NewAccount(Strict):
    account_id: str | None = Field(
        None, pattern=ACCOUNT, description="Digits; a random one when omitted."
    )
    balance: str = Field("0", pattern=DECIMAL, max_length=62, description="Initial cash.")


class NewSymbol(Strict):
    symbol: str = Field(pattern=SYMBOL)
    tick: str = Field("0.0001", pattern=DECIMAL, max_length=62, description="Price increment.")
    lot: str = Field("0.01", pattern=DECIMAL, max_length=62, description="Quantity increment.")


class Issue(Strict):
    account_id: str = Field(pattern=ACCOUNT)
    qty: str = Field(pattern=DECIMAL, max_length=62)


class Cash(Strict):
    amount: str = Field(pattern=DECIMAL, max_length=62)


class NewOrder(Strict):
    symbol: str = Field(pattern=SYMBOL)
    side: Side
    type: OrderType = OrderType.LIMIT
    qty: str = Field(
        pattern=DECIMAL, max_length=62, description="Shares; for a market buy the most it may buy."
    )
    price: str | None = Field(
        None, pattern=DECIMAL, max_length=62, description="Limit price; omit for MARKET."
    )
    tif: Tif | None = Field(None, description="Default GTC for LIMIT, IOC for MARKET.")
    expire_ts: int | None = Field(
        None, ge=0, le=MAX_ID, description="GTD expiry, microseconds since the epoch."
    )
    post_only: bool = False
    stp: Stp = Field(HTTP_STP_DEFAULT, description="Self-trade prevention (taker's mode).")
    budget: str | None = Field(
        None, pattern=DECIMAL, max_length=62, description="Market buy: the most cash to spend."
    )
    client_order_id: str | None = Field(
        None, pattern=CLIENT_ORDER_ID, description="Idempotency key: a retry gets the original."
    )


class Reduce(Strict):
    qty: str = Field(pattern=DECIMAL, max_length=62, description="Shares to take off the order.")


class Replace(Strict):
    price: str = Field(pattern=DECIMAL, max_length=62)
    qty: str = Field(pattern=DECIMAL, max_length=62, description="The new open quantity.")


# -- responses -------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    error: str
    command_id: str | None = None


class CreatedAccount(BaseModel):
    account_id: str
    api_key: str = Field(description="Shown once; only its SHA-256 is kept.")
    balance: str


class SymbolOut(BaseModel):
    symbol: str
    tick: str
    lot: str
    created: bool


class Issued(BaseModel):
    account_id: str
    symbol: str
    shares_available: str


class CashOut(BaseModel):
    account_id: str
    amount: str
    cash_available: str


class BalanceOut(BaseModel):
    account_id: str
    cash_available: str
    cash_held: str


class PositionOut(BaseModel):
    symbol: str
    available: str
    held: str


class Decision(BaseModel):
    """A write's answer: the ledger's decision event."""

    command_id: str
    event: str
    order_id: int | None = None
    duplicate: bool = False
    detail: dict[str, Any]


class Execution(BaseModel):
    order_id: int
    symbol: str
    side: str
    price: str
    qty: str
    role: str
    seq: int
    ts: int


class OrderOut(BaseModel):
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    price: str | None
    qty: str
    tif: str
    expire_ts: int | None
    post_only: bool
    stp: str
    budget: str | None
    replaces: int | None
    status: str
    open_qty: str
    executed_qty: str
    cancelled_qty: str
    reduced_qty: str
    close_reason: str | None
    created_ts: int
    updated_ts: int


class OrderDetail(OrderOut):
    executions: list[Execution]


class Level(BaseModel):
    price: str
    qty: str


class BookOut(BaseModel):
    symbol: str
    seq: int = Field(description="The market.events sequence these levels reflect.")
    bids: list[Level]
    asks: list[Level]


class TradeOut(BaseModel):
    seq: int
    price: str
    qty: str
    taker_side: str
    ts: int


# -- validation ------------------------------------------------------------------------------
def _amount(parse, text: str, field: str, **kwargs: Any) -> int:
    try:
        return parse(text, **kwargs)
    except AmountError as exc:
        raise InvalidRequest(f"{field}: {exc}") from exc


def cash(text: str, field: str, *, positive: bool = True) -> int:
    return _amount(parse_cash, text, field, positive=positive)


def qty(text: str, field: str = "qty") -> int:
    return _amount(parse_qty, text, field)


def price(text: str, field: str = "price") -> int:
    return _amount(parse_price, text, field)


def order_spec(order: NewOrder, now_us: int) -> OrderSpec:
    """A NewOrder checked for everything that does not depend on state."""
    market = order.type is OrderType.MARKET
    tif = order.tif or (Tif.IOC if market else Tif.GTC)
    if market and order.price is not None:
        raise InvalidRequest("price: a MARKET order has no price")
    if not market and order.price is None:
        raise InvalidRequest("price: a LIMIT order needs one")
    if market and tif not in (Tif.IOC, Tif.FOK):
        raise InvalidRequest("tif: a MARKET order is IOC or FOK")
    if market and order.post_only:
        raise InvalidRequest("post_only: a MARKET order cannot be post-only")
    if order.post_only and tif in (Tif.IOC, Tif.FOK):
        raise InvalidRequest("post_only: an IOC or FOK order cannot be post-only")
    if (tif is Tif.GTD) != (order.expire_ts is not None):
        raise InvalidRequest("expire_ts: required with GTD, and only with GTD")
    if order.expire_ts is not None and order.expire_ts <= now_us:
        raise InvalidRequest("expire_ts: already in the past")
    budget = None
    if order.budget is not None:
        if not (market and order.side is Side.BUY):
            raise InvalidRequest("budget: only a MARKET BUY has a budget")
        budget = cash(order.budget, "budget")
    elif market and order.side is Side.BUY:
        raise InvalidRequest("budget: a MARKET BUY needs one (the most cash it may spend)")
    return OrderSpec(
        symbol=order.symbol,
        side=order.side.value,
        qty=qty(order.qty),
        price=None if market else price(order.price or ""),
        tif=tif.value,
        expire_ts=order.expire_ts,
        post_only=order.post_only,
        stp=order.stp.value,
        budget=budget,
        client_order_id=order.client_order_id or "",
    )


# -- rendering -------------------------------------------------------------------------------
def _opt(fmt, units: int | None) -> str | None:
    return None if units is None else fmt(units)


def execution_out(row: dict[str, Any], order: dict[str, Any] | None = None) -> Execution:
    base = order or row
    return Execution(
        order_id=row.get("order_id", base.get("order_id")),
        symbol=row.get("symbol", base.get("symbol")),
        side=row.get("side", base.get("side")),
        price=format_price(row["price"]),
        qty=format_qty(row["qty"]),
        role=row["role"],
        seq=row["seq"],
        ts=row["ts"],
    )


def order_out(row: dict[str, Any]) -> OrderOut:
    return OrderOut(
        order_id=row["order_id"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=row["side"],
        price=_opt(format_price, row["price"]),
        qty=format_qty(row["qty"]),
        tif=row["tif"],
        expire_ts=row["expire_ts"],
        post_only=row["post_only"],
        stp=row["stp"],
        budget=_opt(format_cash, row["budget"]),
        replaces=row["replaces"],
        status=row["status"],
        open_qty=format_qty(row["open_qty"]),
        executed_qty=format_qty(row["executed_qty"]),
        cancelled_qty=format_qty(row["cancelled_qty"]),
        reduced_qty=format_qty(row["reduced_qty"]),
        close_reason=row["close_reason"],
        created_ts=row["created_ts"],
        updated_ts=row["updated_ts"],
    )


# which fields of a decision are amounts, and in which unit, for rendering them as decimals
_CASH = {"amount", "balance", "cash_available", "cash_held", "budget"}
_QTY = {"qty", "remaining", "shares_available", "shares_held"}
_PRICE = {"price", "tick"}


def decision_detail(record: dict[str, Any]) -> dict[str, Any]:
    """A decision record as JSON: amounts as decimal strings, the envelope left out."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        if name in ("envelope", "api_key_hash"):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            if name in ("hold", "released"):  # cash for a buy, shares for a sell
                value = format_cash(value) if record.get("side") == "BUY" else format_qty(value)
            elif name in _CASH:
                value = format_cash(value)
            elif name in _QTY or name == "lot":
                value = format_qty(value)
            elif name in _PRICE:
                value = format_price(value)
        out[name] = value
    return out
