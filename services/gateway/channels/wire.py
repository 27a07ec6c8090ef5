"""The JSON-lines wire of the private (7001) and public (7002) channels: lines in, requests out,
messages in, lines out (docs/channels.md). Pure: no socket, no clock.

Amounts travel as JSON numbers (``145``, ``145.25``) and are read from the number's own text, never
through a float, so a price has at most 4 decimals and a quantity at most 2 (more is refused, as
everywhere in Marketlog); they are written back the same way, without trailing zeros.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from services.common.money import (
    AmountError,
    format_cash,
    format_price,
    format_qty,
    parse_cash,
    parse_price,
    parse_qty,
)

MAX_ORDER_ID = 2**53 - 1  # exact in every JSON parser
SYMBOL = re.compile(r"[A-Za-z0-9]{1,32}")
SIDES = {"BUY": "BUY", "SELL": "SELL", "BID": "BUY", "ASK": "SELL"}


class WireError(ValueError):
    """A line that is not a request this channel takes; the message says why, for the client."""

    def __init__(self, message: str, order_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.order_id = order_id


class Number(str):
    """The text of a JSON number with a fraction or exponent (never turned into a float)."""


# -- requests ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateOrder:
    order_id: int
    symbol: str
    side: str  # BUY | SELL
    qty: int
    price: int | None  # None: a market order (IOC)
    budget: int | None = None  # a market buy's most cash to spend


@dataclass(frozen=True)
class CancelOrder:
    order_id: int
    symbol: str


@dataclass(frozen=True)
class Login:
    api_key: str


@dataclass(frozen=True)
class Heartbeat:
    pass


@dataclass(frozen=True)
class CancelOnDisconnect:
    enabled: bool


@dataclass(frozen=True)
class Subscribe:
    symbol: str


@dataclass(frozen=True)
class Unsubscribe:
    symbol: str


def _constant(name: str) -> Any:
    raise WireError(f"{name} is not a number")


def load(line: bytes) -> dict[str, Any]:
    """One line as a JSON object, numbers kept as text (Number) or int."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("the line is not UTF-8") from exc
    try:
        value = json.loads(text, parse_float=Number, parse_constant=_constant)
    except WireError:
        raise
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise WireError(f"not JSON: {str(exc)[:80]}") from exc
    except RecursionError as exc:
        raise WireError("nested too deeply") from exc
    if not isinstance(value, dict):
        raise WireError("a message is a JSON object")
    return value


def _message(value: dict[str, Any]) -> str:
    message = value.get("message")
    if not isinstance(message, str):
        raise WireError('"message" is required: a string')
    return message


def _order_id(value: dict[str, Any]) -> int:
    oid = value.get("orderId")
    if isinstance(oid, bool) or not isinstance(oid, int):
        raise WireError('"orderId" is required: an integer')
    if not 0 <= oid <= MAX_ORDER_ID:
        raise WireError(f'"orderId" must be between 0 and {MAX_ORDER_ID}')
    return oid


def _symbol(value: dict[str, Any], default: str, order_id: int | None = None) -> str:
    symbol = value.get("symbol", default)
    if not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol):
        raise WireError('"symbol" must be 1-32 ASCII letters or digits', order_id)
    return symbol


def _amount(value: dict[str, Any], name: str, parse, order_id: int) -> int:
    raw = value.get(name)
    if isinstance(raw, bool) or not isinstance(raw, int | Number):
        raise WireError(f'"{name}" must be a number', order_id)
    try:
        return parse(str(raw))
    except AmountError as exc:
        raise WireError(f"{name}: {exc}", order_id) from exc


def _create(value: dict[str, Any], default_symbol: str) -> CreateOrder:
    oid = _order_id(value)
    side = value.get("side")
    if not isinstance(side, str) or side.upper() not in SIDES:
        raise WireError('"side" must be "BUY" or "SELL"', oid)
    symbol = _symbol(value, default_symbol, oid)
    qty = _amount(value, "quantity", parse_qty, oid)
    price = None if value.get("price") is None else _amount(value, "price", parse_price, oid)
    budget = None
    if value.get("budget") is not None:
        budget = _amount(value, "budget", lambda t: parse_cash(t, positive=True), oid)
    buy = SIDES[side.upper()] == "BUY"
    if price is None and buy and budget is None:
        raise WireError('a market buy needs a "budget" (the most cash it may spend)', oid)
    if budget is not None and (price is not None or not buy):
        raise WireError('only a market buy has a "budget"', oid)
    return CreateOrder(oid, symbol, SIDES[side.upper()], qty, price, budget)


PrivateRequest = CreateOrder | CancelOrder | Login | Heartbeat | CancelOnDisconnect


def parse_private(line: bytes, default_symbol: str) -> PrivateRequest:
    """A private-channel request; WireError says what is wrong."""
    value = load(line)
    message = _message(value)
    if message == "createOrder":
        return _create(value, default_symbol)
    if message == "cancelOrder":
        return CancelOrder(_order_id(value), _symbol(value, default_symbol))
    if message == "login":
        key = value.get("apiKey")
        if not isinstance(key, str) or not 0 < len(key) <= 256:
            raise WireError('"apiKey" is required: a string')
        return Login(key)
    if message == "heartbeat":
        return Heartbeat()
    if message == "cancelOnDisconnect":
        enabled = value.get("enabled")
        if not isinstance(enabled, bool):
            raise WireError('"enabled" is required: true or false')
        return CancelOnDisconnect(enabled)
    raise WireError(
        f"unknown message {message[:40]!r}: createOrder, cancelOrder, login, heartbeat, "
        "cancelOnDisconnect"
    )


def parse_public(line: bytes, default_symbol: str) -> Subscribe | Unsubscribe | Heartbeat:
    """A public-channel request; WireError says what is wrong."""
    value = load(line)
    message = _message(value)
    if message == "subscribe":
        return Subscribe(_symbol(value, default_symbol))
    if message == "unsubscribe":
        return Unsubscribe(_symbol(value, default_symbol))
    if message == "heartbeat":
        return Heartbeat()
    raise WireError(f"unknown message {message[:40]!r}: subscribe, unsubscribe, heartbeat")


# -- lines ------------------------------------------------------------------------------------
class Raw(str):
    """Text written into a line as it is: a JSON number."""


def price(units: int) -> Raw:
    return Raw(format_price(units))


def qty(units: int) -> Raw:
    return Raw(format_qty(units))


def cash(units: int) -> Raw:
    return Raw(format_cash(units))


def render(fields: dict[str, Any]) -> bytes:
    """One JSON line; Raw values are written as numbers, in the given key order."""
    parts = [
        f"{json.dumps(k)}:{v if isinstance(v, Raw) else json.dumps(v)}" for k, v in fields.items()
    ]
    return ("{" + ",".join(parts) + "}\n").encode()


def execution_report(order_id: int, report: str, symbol: str, **extra: Any) -> bytes:
    return render(
        {"message": "executionReport", "orderId": order_id, "report": report, "symbol": symbol}
        | extra
    )


def error(message: str, order_id: int | None = None) -> bytes:
    fields: dict[str, Any] = {"message": "error", "error": message}
    if order_id is not None:
        fields["orderId"] = order_id
    return render(fields)


class LineSplitter:
    """Bytes in, whole lines out; a line longer than ``max_line`` is dropped up to its newline and
    reported once as ``None`` (the connection goes on with the next line)."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line:
                    if not self._skipping:
                        out.append(None)
                    self._skipping = True
                    self._buffer.clear()
                return out
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
            elif len(line) > self.max_line:
                out.append(None)
            elif line.strip():
                out.append(line)


# -- the public channel's messages ------------------------------------------------------------
BOOK_SIDE = {"BUY": "bid", "SELL": "ask"}


def seconds(ts_us: int) -> Raw:
    """Microseconds since the epoch as seconds with 6 decimals (the kit's ``time``)."""
    return Raw(f"{ts_us // 1_000_000}.{ts_us % 1_000_000:06d}")


def orderbook(symbol: str, side: str, price_units: int, qty_units: int, book_seq: int) -> dict:
    return {
        "type": "orderbook",
        "side": BOOK_SIDE[side],
        "price": price(price_units),
        "quantity": qty(qty_units),  # the new total at that price; 0: the level is gone
        "symbol": symbol,
        "bookSeq": book_seq,
    }


def trade(symbol: str, ts_us: int, price_units: int, qty_units: int, book_seq: int) -> dict:
    return {
        "type": "trade",
        "time": seconds(ts_us),
        "price": price(price_units),
        "quantity": qty(qty_units),
        "symbol": symbol,
        "bookSeq": book_seq,
    }


def snapshot(symbol: str, book_seq: int, levels: int) -> dict:
    """Announces ``levels`` orderbook messages that are the whole book at ``book_seq``."""
    return {"type": "snapshot", "symbol": symbol, "bookSeq": book_seq, "levels": levels}


def book_checksum(symbol: str, book_seq: int, depth: int, crc: int) -> dict:
    return {
        "type": "checksum",
        "symbol": symbol,
        "bookSeq": book_seq,
        "depth": depth,
        "checksum": crc,
    }
