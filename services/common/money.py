"""Fixed-point amounts: every price, quantity and cash amount is an integer of its own unit.

Scales are chosen so that price x quantity is exact in cash units:

    1 price unit    = 0.0001 of the currency      (PRICE_SCALE = 10**4)
    1 quantity unit = 0.01 of a share             (QTY_SCALE   = 10**2)
    1 cash unit     = 0.000001 of the currency    (CASH_SCALE  = PRICE_SCALE * QTY_SCALE)

so ``price_units * qty_units`` is the notional in cash units with no rounding. Amounts are stored as
Avro ``long``; anything that could pass ``MAX_UNITS`` (2**63 - 1 units, about 9.2 trillion in cash)
is refused by the processor that would overflow. Text input is parsed without floats; a value with
more significant decimals than its scale allows is rejected (trailing zeros are fine: "20.000000"
is 20).
"""

from __future__ import annotations

import re

PRICE_SCALE = 10**4
QTY_SCALE = 10**2
CASH_SCALE = PRICE_SCALE * QTY_SCALE
MAX_UNITS = 2**63 - 1

_DECIMAL = re.compile(r"([+-]?)(\d{1,30})(?:\.(\d{1,30}))?")


class AmountError(ValueError):
    """Text that is not an acceptable amount; the message says why, for the client."""


def _parse(text: str, scale: int, what: str, *, signed: bool, positive: bool) -> int:
    if not isinstance(text, str):
        raise AmountError(f"{what} must be a decimal string")
    match = _DECIMAL.fullmatch(text.strip())
    if match is None:
        raise AmountError(f"{what} {text[:40]!r} is not a decimal number")
    sign, whole, frac = match.group(1), match.group(2), (match.group(3) or "").rstrip("0")
    places = len(str(scale)) - 1
    if len(frac) > places:
        raise AmountError(f"{what} {text[:40]!r} has more than {places} decimal places")
    units = int(whole) * scale + (int(frac.ljust(places, "0")) if frac else 0)
    if sign == "-":
        if not signed:
            raise AmountError(f"{what} {text[:40]!r} must not be negative")
        units = -units
    if positive and units == 0:
        raise AmountError(f"{what} must be greater than zero")
    if abs(units) > MAX_UNITS:
        raise AmountError(f"{what} {text[:40]!r} is too large")
    return units


def parse_price(text: str) -> int:
    """A limit price: positive, at most 4 decimals."""
    return _parse(text, PRICE_SCALE, "price", signed=False, positive=True)


def parse_qty(text: str, *, signed: bool = False) -> int:
    """A share quantity, at most 2 decimals; ``signed`` allows a sign (XML: negative = sell)."""
    return _parse(text, QTY_SCALE, "amount", signed=signed, positive=True)


def parse_cash(text: str, *, positive: bool = False) -> int:
    """A cash amount, at most 6 decimals, never negative."""
    return _parse(text, CASH_SCALE, "cash amount", signed=False, positive=positive)


def _format(units: int, scale: int, min_places: int) -> str:
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), scale)
    places = len(str(scale)) - 1
    digits = str(frac).rjust(places, "0").rstrip("0").ljust(min_places, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def format_price(units: int, min_places: int = 0) -> str:
    return _format(units, PRICE_SCALE, min_places)


def format_qty(units: int, min_places: int = 0) -> str:
    return _format(units, QTY_SCALE, min_places)


def format_cash(units: int, min_places: int = 0) -> str:
    return _format(units, CASH_SCALE, min_places)
