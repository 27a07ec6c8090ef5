"""The JSON-lines wire of the private and public channels (services/gateway/channels/wire.py):
requests parsed exactly or refused with a reason, lines rendered exactly, lines split
and bounded."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.gateway.channels import wire
from services.gateway.channels.wire import (
    CancelOrder,
    CreateOrder,
    Heartbeat,
    LineSplitter,
    Login,
    Subscribe,
    Unsubscribe,
    WireError,
    parse_private,
    parse_public,
)


def private(obj) -> object:
    return parse_private(json.dumps(obj).encode(), "WOOD")


def test_the_kits_create_order():
    line = b'{"message":"createOrder","orderId":662688,"side":"BUY","price":145,"quantity":350}'
    assert parse_private(line, "WOOD") == CreateOrder(662688, "WOOD", "BUY", 35000, 1450000, None)


def test_decimals_symbols_market_orders_and_the_rest():
    order = {"message": "createOrder", "orderId": 1, "side": "sell", "price": 145.2500,
             "quantity": 0.5, "symbol": "ACME"}  # fmt: skip
    assert private(order) == CreateOrder(1, "ACME", "SELL", 50, 1452500, None)
    market = {"message": "createOrder", "orderId": 2, "side": "BUY", "quantity": 3, "budget": 500}
    assert private(market) == CreateOrder(2, "WOOD", "BUY", 300, None, 500_000_000)
    market_sell = {"message": "createOrder", "orderId": 3, "side": "SELL", "quantity": 3}
    assert private(market_sell) == CreateOrder(3, "WOOD", "SELL", 300, None, None)
    assert private({"message": "cancelOrder", "orderId": 9}) == CancelOrder(9, "WOOD")
    assert private({"message": "login", "apiKey": "k"}) == Login("k")
    assert private({"message": "heartbeat"}) == Heartbeat()
    assert parse_public(b'{"message":"subscribe"}', "WOOD") == Subscribe("WOOD")
    assert parse_public(b'{"message":"unsubscribe","symbol":"A1"}', "WOOD") == Unsubscribe("A1")
    assert parse_public(b'{"message":"heartbeat"}', "WOOD") == Heartbeat()


BASE = {"message": "createOrder", "orderId": 7, "side": "BUY", "price": 10, "quantity": 1}


@pytest.mark.parametrize(
    "change, why",
    [
        ({"orderId": "7"}, "an integer"),
        ({"orderId": 1.0}, "an integer"),
        ({"orderId": True}, "an integer"),
        ({"orderId": 2**53}, "between 0 and"),
        ({"side": "buy!"}, '"side" must be'),
        ({"side": None}, '"side" must be'),
        ({"price": "10"}, '"price" must be a number'),
        ({"price": True}, '"price" must be a number'),
        ({"price": -1}, "must not be negative"),
        ({"price": 0}, "greater than zero"),
        ({"price": 10.00001}, "more than 4 decimal places"),
        ({"quantity": 0.001}, "more than 2 decimal places"),
        ({"quantity": 0}, "greater than zero"),
        ({"quantity": None}, '"quantity" must be a number'),
        ({"quantity": [1]}, '"quantity" must be a number'),
        ({"price": 10**20}, "too large"),
        ({"price": None}, "market buy needs"),
        ({"budget": 5}, "only a market buy"),
        ({"symbol": ""}, '"symbol" must be'),
        ({"symbol": "x" * 33}, '"symbol" must be'),
        ({"message": "createorder"}, "unknown message"),
    ],
)
def test_bad_create_orders_are_refused_with_the_reason(change, why):
    with pytest.raises(WireError) as refused:
        private(BASE | change)
    assert why in refused.value.message
    if "orderId" not in change and "message" not in change:
        assert refused.value.order_id == 7  # named in the error when known


@pytest.mark.parametrize(
    "line, why",
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"[]", "a JSON object"),
        (b"null", "a JSON object"),
        (b'{"message": 1}', '"message" is required'),
        (b'{"message":"createOrder","orderId":1,"side":"BUY","price":Infinity,"quantity":1}',
         "Infinity is not a number"),
        (b'{"message":"createOrder","orderId":1,"side":"BUY","price":1e2,"quantity":1}',
         "not a decimal number"),
        (b"\xc3\x28", "not UTF-8"),
        (b'{"message":"login"}', '"apiKey" is required'),
        (b"[" * 4000, "nested too deeply"),
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, "nested too deeply"),
        (b'{"message":"createOrder","orderId":' + b"9" * 5000 + b"}", "not JSON"),
    ],
)  # fmt: skip
def test_bad_lines_are_refused(line, why):
    with pytest.raises(WireError) as refused:
        parse_private(line, "WOOD")
    assert why in refused.value.message


@given(st.binary(max_size=200))
def test_any_bytes_are_a_request_or_a_wire_error(data):
    for parse in (parse_private, parse_public):
        with contextlib.suppress(WireError):
            parse(data, "WOOD")


@given(st.dictionaries(st.sampled_from(["message", "orderId", "side", "price", "quantity",
                                        "symbol", "budget", "apiKey"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                 st.text(max_size=10), st.sampled_from(["createOrder",
                                 "cancelOrder", "BUY", "SELL", "subscribe"]))))  # fmt: skip
def test_any_object_is_a_request_or_a_wire_error(obj):
    line = json.dumps(obj).encode()
    for parse in (parse_private, parse_public):
        with contextlib.suppress(WireError):
            parse(line, "WOOD")


def test_lines_are_rendered_exactly():
    assert wire.execution_report(5, "FILL", "WOOD", price=wire.price(1490000),
                                 quantity=wire.qty(12050)) == (
        b'{"message":"executionReport","orderId":5,"report":"FILL","symbol":"WOOD",'
        b'"price":149,"quantity":120.5}\n'
    )  # fmt: skip
    assert wire.error("no", 3) == b'{"message":"error","error":"no","orderId":3}\n'
    assert wire.render(wire.orderbook("WOOD", "BUY", 1450000, 0, 12)) == (
        b'{"type":"orderbook","side":"bid","price":145,"quantity":0,"symbol":"WOOD","bookSeq":12}\n'
    )
    trade = wire.render(wire.trade("WOOD", 1461763950458236, 1450001, 10000, 4))
    assert trade == (
        b'{"type":"trade","time":1461763950.458236,"price":145.0001,"quantity":100,'
        b'"symbol":"WOOD","bookSeq":4}\n'
    )
    assert wire.seconds(5) == "0.000005"


def test_the_splitter_bounds_lines_and_goes_on():
    lines = LineSplitter(10)
    assert lines.feed(b'{"a":1}\r\n\n  \n{"b"') == [b'{"a":1}']
    assert lines.feed(b":2}\n") == [b'{"b":2}']
    assert lines.feed(b"x" * 25) == [None]  # told once, skipped to its newline
    assert lines.feed(b"y" * 25) == []
    assert lines.feed(b'yy\n{"c":3}\n') == [b'{"c":3}']
    assert lines.feed(b"z" * 11 + b"\nok\n") == [None, b"ok"]
