"""The HTTP API's request and response bodies, and their validation into exchange units. Pure.

Amounts travel as decimal strings (never JSON numbers, so no float touches them). Each kind of
amount has one exact form (``Amount``), which the OpenAPI document states as a pattern and the
server checks before anything else: digits without a sign or leading zeros, at most so many digits
before the point and the unit's decimals after it (services.common.money; trailing zeros beyond
them are fine), and not zero where a positive amount is needed. Anything else is refused with a
message that says which field and why. The order rules (``order_spec``: a LIMIT order has a price,
a MARKET order none, ...) are in the document too, as ``NewOrder``'s ``oneOf``: every request the
document calls valid is one the server takes, and every other one gets a 422 (tests/unit/
test_http_contract.py holds the two to each other).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
)

from services.common.money import (
    format_cash,
    format_price,
    format_qty,
    parse_cash,
    parse_price,
    parse_qty,
)

from ..commands import OrderSpec

ACCOUNT = r"^[0-9]{1,32}$"
SYMBOL = r"^[A-Za-z0-9]{1,32}$"
CLIENT_ORDER_ID = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_ID = 2**63 - 1
# the latest GTD expiry, µs: 2**53 - 1 is exact in every JSON parser (a JavaScript number); 2255
MAX_EXPIRE_TS = 2**53 - 1
MAX_DECIMALS = 30  # digits after the point services.common.money reads at all


class InvalidRequest(ValueError):
    """A well-typed body that still cannot be an order (or other command); 422 for the caller."""


class Overtaken(InvalidRequest):
    """A valid request that the clock has overtaken (a GTD expiry no longer in the future): 409,
    the answer the ledger gives the same order when the expiry passes before it decides."""


_NUMBER = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?")


@dataclass(frozen=True)
class Amount:
    """One kind of decimal amount in JSON: its exact form, and its parse into units."""

    what: str  # what messages call it
    places: int  # decimals of its unit
    digits: int  # most digits before the point: every value stays far below 2**63 units
    positive: bool  # zero refused
    parse: Callable[[str], int]
    example: str

    @cached_property
    def pattern(self) -> str:
        tail = MAX_DECIMALS - self.places
        fraction = rf"\.[0-9]{{1,{self.places}}}0{{0,{tail}}}"
        whole = rf"[1-9][0-9]{{0,{self.digits - 1}}}"
        if not self.positive:
            return rf"^(0|{whole})({fraction})?$"
        below_one = rf"0\.[0-9]{{0,{self.places - 1}}}[1-9]0{{0,{tail}}}"
        return rf"^({whole}({fraction})?|{below_one})$"

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    @property
    def max_length(self) -> int:
        return self.digits + 1 + MAX_DECIMALS

    @property
    def rule(self) -> str:
        least = "greater than zero" if self.positive else "zero or more"
        return (
            f"A decimal string, {least}: digits without a sign or leading zeros, at most "
            f"{self.digits} before the point and {self.places} decimals after it (zeros beyond "
            "them are fine)."
        )

    def describe(self, text: str = "") -> str:
        return f"{text} {self.rule}".strip()

    def schema(self, description: str = "") -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": self.pattern,
            "maxLength": self.max_length,
            "description": self.describe(description),
            "examples": [self.example],
        }

    def annotated(self) -> Any:
        """The type of a model field holding this amount. The model only bounds its length (an
        order built in Python still reaches ``order_spec``, which says what is wrong with it);
        ``units`` checks the form, before anything else is done with the request."""
        return Annotated[
            str, StringConstraints(max_length=self.max_length), WithJsonSchema(self.schema())
        ]

    def units(self, text: str, field: str) -> int:
        if not isinstance(text, str) or self.regex.fullmatch(text) is None:
            raise InvalidRequest(f"{field}: {self.explain(text)}")
        return self.parse(text)

    def explain(self, text: Any) -> str:
        """Why text is not this amount (text that does not match the pattern)."""
        if not isinstance(text, str):
            return f"{self.what} must be a decimal string"
        shown = repr(text[:40])
        match = _NUMBER.fullmatch(text)
        if match is None:
            return f"{self.what} {shown} is not a decimal number (digits, a point, digits)"
        sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
        decimals = fraction.rstrip("0")
        zero = not whole.strip("0") and not decimals
        if sign == "-" and not zero:
            return f"{self.what} {shown} must not be negative"
        if sign:
            return f"{self.what} {shown} must not have a sign"
        if len(whole) > 1 and whole.startswith("0"):
            return f"{self.what} {shown} must not have leading zeros"
        if len(decimals) > self.places:
            return f"{self.what} {shown} has more than {self.places} decimal places"
        if len(whole) > self.digits:
            return (
                f"{self.what} {shown} is too large: at most {self.digits} digits before the point"
            )
        if len(fraction) > MAX_DECIMALS:
            return f"{self.what} {shown} has more than {MAX_DECIMALS} digits after the point"
        if self.positive and zero:
            return f"{self.what} must be greater than zero"
        return f"{self.what} {shown} is not in the form {self.pattern}"


CASH = Amount("cash amount", 6, 12, False, parse_cash, "1000")
POSITIVE_CASH = Amount(
    "cash amount", 6, 12, True, lambda text: parse_cash(text, positive=True), "250.5"
)
PRICE = Amount("price", 4, 14, True, parse_price, "101.25")
QTY = Amount("quantity", 2, 16, True, parse_qty, "10")
CashText = CASH.annotated()
PositiveCashText = POSITIVE_CASH.annotated()
PriceText = PRICE.annotated()
QtyText = QTY.annotated()


def _whole(value: Any) -> Any:
    """JSON Schema counts 5.0 as the integer 5, and so does the API; 5.5, "5" and true are not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[StrictInt, BeforeValidator(_whole)]


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
    balance: CashText = Field("0", description=CASH.describe("Initial cash."))


class NewSymbol(Strict):
    symbol: str = Field(pattern=SYMBOL)
    tick: PriceText = Field("0.0001", description=PRICE.describe("Price increment."))
    lot: QtyText = Field("0.01", description=QTY.describe("Quantity increment."))


class Issue(Strict):
    account_id: str = Field(pattern=ACCOUNT)
    qty: QtyText = Field(description=QTY.describe("Shares to add to the account."))


class Cash(Strict):
    amount: PositiveCashText


class NewOrder(Strict):
    """An order as sent. The model takes any combination of these fields; ``order_spec`` applies
    the rules between them, and the schema (``order_schema``) states exactly the combinations
    that pass both."""

    symbol: str = Field(pattern=SYMBOL)
    side: Side
    type: OrderType = OrderType.LIMIT
    qty: QtyText
    price: PriceText | None = None
    tif: Tif | None = None
    expire_ts: WholeNumber | None = Field(None, ge=0, le=MAX_EXPIRE_TS)
    post_only: StrictBool = False
    stp: Stp = HTTP_STP_DEFAULT
    budget: PositiveCashText | None = None
    client_order_id: str | None = Field(None, pattern=CLIENT_ORDER_ID)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return order_schema()


def order_schema() -> dict[str, Any]:
    """NewOrder as JSON Schema: one branch per shape of order, exactly one matching any valid
    body. What it cannot say: a GTD expiry must still be in the future (else 409)."""
    null = {"type": "null"}

    def enum(*values: str, **more: Any) -> dict[str, Any]:
        return {"type": "string", "enum": list(values), **more}

    def const(value: Any, **more: Any) -> dict[str, Any]:
        kind = "boolean" if isinstance(value, bool) else "string"
        return {"type": kind, "const": value, **more}

    def branch(title: str, text: str, required: list[str], **fields: Any) -> dict[str, Any]:
        common = {
            "symbol": {"type": "string", "pattern": SYMBOL, "description": "A listed symbol."},
            "side": enum("BUY", "SELL"),
            "qty": QTY.schema("Shares; for a market buy the most it may buy."),
            "stp": enum(
                *Stp,
                default=HTTP_STP_DEFAULT.value,
                description="Self-trade prevention, the taker's mode.",
            ),
            "client_order_id": {
                "anyOf": [{"type": "string", "pattern": CLIENT_ORDER_ID}, null],
                "description": "Idempotency key: a retry gets the original decision.",
            },
        }
        return {
            "title": title,
            "description": text,
            "type": "object",
            "properties": {**common, **fields},
            "required": ["symbol", "side", "qty", *required],
            "additionalProperties": False,
        }

    limit = {
        "type": const("LIMIT", default="LIMIT"),
        "price": PRICE.schema("Limit price."),
        "budget": null,
    }
    post_only = {
        "type": "boolean",
        "default": False,
        "description": "Only rest on the book, never take: closed instead if it would trade "
        "on arrival.",
    }
    market = {
        "type": const("MARKET"),
        "price": null,
        "tif": {"anyOf": [enum("IOC", "FOK"), null], "default": "IOC"},
        "expire_ts": null,
        "post_only": const(False, default=False),
    }
    return {
        "title": "NewOrder",
        "description": "An order: one of these shapes.",
        "oneOf": [
            branch(
                "LimitOrder",
                "A LIMIT order, good till cancelled (the default type and time in force).",
                ["price"],
                **limit,
                tif={"anyOf": [const("GTC"), null], "default": "GTC"},
                expire_ts=null,
                post_only=post_only,
            ),
            branch(
                "LimitGtdOrder",
                "A LIMIT order good till expire_ts.",
                ["price", "tif", "expire_ts"],
                **limit,
                tif=const("GTD"),
                expire_ts={
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_EXPIRE_TS,
                    "description": "Expiry, microseconds since the epoch; one already past is "
                    "refused with 409.",
                },
                post_only=post_only,
            ),
            branch(
                "LimitIocFokOrder",
                "A LIMIT order that takes what it can at once (IOC) or all or nothing (FOK), "
                "never resting.",
                ["price", "tif"],
                **limit,
                tif=enum("IOC", "FOK"),
                expire_ts=null,
                post_only=const(False, default=False),
            ),
            branch(
                "MarketSellOrder",
                "A MARKET sell: no price; IOC (default) or FOK.",
                ["type"],
                **market,
                side=const("SELL"),
                budget=null,
            ),
            branch(
                "MarketBuyOrder",
                "A MARKET buy: no price; IOC (default) or FOK; spends at most its budget.",
                ["type", "budget"],
                **market,
                side=const("BUY"),
                budget=POSITIVE_CASH.schema("The most cash it may spend."),
            ),
        ],
    }


class Reduce(Strict):
    qty: QtyText = Field(description=QTY.describe("Shares to take off the order."))


class Replace(Strict):
    price: PriceText
    qty: QtyText = Field(description=QTY.describe("The new open quantity."))


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
def cash(text: str, field: str, *, positive: bool = True) -> int:
    return (POSITIVE_CASH if positive else CASH).units(text, field)


def qty(text: str, field: str = "qty") -> int:
    return QTY.units(text, field)


def price(text: str, field: str = "price") -> int:
    return PRICE.units(text, field)


def order_spec(order: NewOrder, now_us: int) -> OrderSpec:
    """A NewOrder checked for everything that does not depend on the ledger's state: the rules
    between its fields and its amounts (InvalidRequest, 422), then that a GTD expiry is still in
    the future (Overtaken, 409)."""
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
    budget = None
    if order.budget is not None:
        if not (market and order.side is Side.BUY):
            raise InvalidRequest("budget: only a MARKET BUY has a budget")
        budget = cash(order.budget, "budget")
    elif market and order.side is Side.BUY:
        raise InvalidRequest("budget: a MARKET BUY needs one (the most cash it may spend)")
    spec = OrderSpec(
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
    if order.expire_ts is not None and order.expire_ts <= now_us:
        raise Overtaken(f"expire_ts: {order.expire_ts} is already in the past (now {now_us})")
    return spec


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
_QTY = {"qty", "remaining", "open_qty", "shares_available", "shares_held"}
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


class Readiness(BaseModel):
    ready: bool
    waiting_for: list[str]


# -- day trading (docs/daytrading.md; the day-trading router, http/daytrade.py) ----------------
DAYTRADE_SYMBOL = r"^[A-Z]{1,3}$"
# a DUMPLOG file name over HTTP: a base name only (the line protocol also takes ./name)
DUMP_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"


def _dollars(per_cent: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        whole, _, fraction = text.partition(".")
        cents = int(whole) * 100 + int((fraction.rstrip("0") or "0").ljust(2, "0"))
        return cents * per_cent

    return parse


# the course's money: dollars with at most 2 significant decimals, up to 9,999,999,999.99
DOLLARS = Amount("amount", 2, 10, True, _dollars(10_000), "200.00")
TRIGGER_PRICE = Amount("trigger price", 2, 10, True, _dollars(100), "20.00")
DollarsText = DOLLARS.annotated()
TriggerText = TRIGGER_PRICE.annotated()


class DayTradeAmount(Strict):
    amount: DollarsText = Field(description=DOLLARS.describe("Dollars."))


class DayTradeOrder(Strict):
    symbol: str = Field(pattern=DAYTRADE_SYMBOL, description="1 to 3 capital letters.")
    amount: DollarsText = Field(description=DOLLARS.describe("Dollars to spend or to sell for."))


class DayTradeTrigger(Strict):
    trigger: TriggerText = Field(description=TRIGGER_PRICE.describe("Trigger price, dollars."))


class DumpRequest(Strict):
    filename: str = Field(
        pattern=DUMP_NAME,
        description="The file's name: 1 to 128 letters, digits, '.', '_' or '-', not starting "
        "with '.'.",
    )


class QuoteOut(BaseModel):
    price: str
    symbol: str
    user: str = Field(description="The userid the quote server was asked for.")
    quote_server_time: int = Field(description="The quote server's time, Unix milliseconds.")
    cryptokey: str
    hit: bool = Field(description="True when this command made the quote server answer.")


class DayTradeOut(BaseModel):
    """A day-trading command's answer: the ledger's DayTradeDecided, money in dollars."""

    command_id: str
    command: str
    txn: int = Field(description="The transaction number the gateway gave the command.")
    symbol: str | None = None
    shares: int | None = Field(None, description="Whole shares, where the command has them.")
    price: str | None = Field(None, description="The entry's price, or the trigger.")
    funds: str | None = Field(None, description="Cost, proceeds, reserve or amount.")
    cash: str = Field(description="Available cash after.")
    cash_held: str = Field(description="Held cash after (orders, pending BUYs, reserves).")
    quote: QuoteOut | None = None


class DumpOut(BaseModel):
    command_id: str
    txn: int
    name: str = Field(description="The file written.")
    bytes: int
    url: str = Field(description="Where to download it (the same key).")


def money_text(units: int, per_cent: int) -> str:
    """Ledger units as dollars: two decimals, more only when not whole cents."""
    sign = "-" if units < 0 else ""
    cents, rest = divmod(abs(units), per_cent)
    text = f"{sign}{cents // 100}.{cents % 100:02d}"
    if rest:
        text += f"{rest:0{len(str(per_cent)) - 1}d}".rstrip("0")
    return text


def day_trade_out(record: dict[str, Any]) -> DayTradeOut:
    quote = record.get("quote")
    return DayTradeOut(
        command_id=record["envelope"]["command_id"],
        command=record["command"],
        txn=record["txn"],
        symbol=record.get("symbol"),
        shares=record.get("shares"),
        price=_opt(lambda u: money_text(u, 100), record.get("price")),
        funds=_opt(lambda u: money_text(u, 10_000), record.get("funds")),
        cash=money_text(record["cash"], 10_000),
        cash_held=money_text(record.get("held", 0), 10_000),
        quote=None
        if quote is None
        else QuoteOut(
            price=money_text(quote["price"], 100),
            symbol=quote["symbol"],
            user=quote["user"],
            quote_server_time=quote["quote_server_time"],
            cryptokey=quote["cryptokey"],
            hit=quote["hit"],
        ),
    )
