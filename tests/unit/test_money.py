"""Fixed-point parsing and formatting: exact, no floats, clear refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common import money


def test_scales_make_price_times_quantity_exact_in_cash_units():
    price, qty = money.parse_price("124.5001"), money.parse_qty("3.07")
    assert price * qty == money.parse_cash("382.215307")
    assert money.CASH_SCALE == money.PRICE_SCALE * money.QTY_SCALE


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("125", 1_250_000),
        ("124.50", 1_245_000),
        ("0.0001", 1),
        ("20.000000", 200_000),
        (" 7 ", 70_000),
    ],
)
def test_prices(text, units):
    assert money.parse_price(text) == units


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.00001", "more than 4 decimal places"),
        ("0", "greater than zero"),
        ("-5", "negative"),
        ("abc", "not a decimal number"),
        ("1e5", "not a decimal number"),
        ("", "not a decimal number"),
        ("NaN", "not a decimal number"),
        ("99999999999999999999", "too large"),
        ("1.", "not a decimal"),
    ],
)
def test_bad_prices_are_refused_with_the_reason(text, message):
    with pytest.raises(money.AmountError, match=message):
        money.parse_price(text)


def test_signed_quantities_for_xml_sells():
    assert money.parse_qty("-100", signed=True) == -10_000
    with pytest.raises(money.AmountError, match="negative"):
        money.parse_qty("-100")
    with pytest.raises(money.AmountError, match="more than 2 decimal places"):
        money.parse_qty("1.001")


def test_formatting():
    assert money.format_price(1_245_000) == "124.5"
    assert money.format_price(1_245_000, 2) == "124.50"
    assert money.format_price(1_250_000, 2) == "125.00"
    assert money.format_qty(40_000) == "400"
    assert money.format_cash(-1) == "-0.000001"


@given(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("10") ** 9, places=4))
def test_price_round_trip(value):
    assert Decimal(money.format_price(money.parse_price(str(value)))) == value
