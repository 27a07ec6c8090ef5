"""The JSON-lines channels through the whole running system (docs/channels.md): the starter kit's
transcript (protocols.md §3) on the default symbol, and bad input on both channels."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from services.gateway.config import ChannelSettings

from .channel_client import LineClient, end_offsets, public, records_between, report

pytestmark = pytest.mark.e2e
OURS = {
    "marketlog.ledger.CreateAccount",
    "marketlog.ledger.IssueShares",
    "marketlog.ledger.PlaceOrder",
    "marketlog.ledger.CancelOrder",
    "marketlog.ledger.CreateSymbol",
}


def order(order_id: int, side: str, price, quantity) -> dict:
    return {
        "message": "createOrder",
        "orderId": order_id,
        "side": side,
        "price": price,
        "quantity": quantity,
    }


def brief(message: dict) -> tuple:
    """A public message as the kit tells it."""
    if message["type"] == "trade":
        return ("trade", message["price"], message["quantity"])
    return (message["side"], message["price"], message["quantity"])


def fill(message: dict) -> tuple:
    return (message["orderId"], message["report"], message.get("price"), message.get("quantity"))


def test_the_starter_kits_transcript(system):
    feed = LineClient(system.public_port)
    head = feed.recv()
    assert head["type"] == "snapshot" and head["symbol"] == "WOOD" and head["seq"] == 1
    assert head["levels"] == 0, "the default symbol's book is not empty at the start"
    buyer, seller = LineClient(system.private_port), LineClient(system.private_port)
    try:
        for order_id, price, quantity in ((1, 145, 100), (2, 145, 200), (3, 144, 300)):
            buyer.send(order(order_id, "BUY", price, quantity))
            new = buyer.until(report)
            assert (new["orderId"], new["report"], new["symbol"]) == (order_id, "NEW", "WOOD")
        rested = [brief(m) for m in feed.take(3, public)]
        assert rested == [("bid", 145, 100), ("bid", 145, 300), ("bid", 144, 300)]

        seller.send(order(662688, "SELL", 144, 350))
        got = [fill(m) for m in seller.take(4, report)]
        assert got == [
            (662688, "NEW", None, None),
            (662688, "FILL", 145, 100),
            (662688, "FILL", 145, 200),
            (662688, "FILL", 144, 50),
        ]
        got = [fill(m) for m in buyer.take(3, report)]
        assert got == [(1, "FILL", 145, 100), (2, "FILL", 145, 200), (3, "FILL", 144, 50)]
        tape = [brief(m) for m in feed.take(5, public)]
        assert tape == [
            ("trade", 145, 100),
            ("trade", 145, 200),
            ("trade", 144, 50),
            ("bid", 145, 0),
            ("bid", 144, 250),
        ]
        numbers = [m["seq"] for m in feed.seen if "seq" in m and m["type"] != "heartbeat"]
        assert numbers == list(range(1, len(numbers) + 1)), "the public channel's seq has a gap"
        assert all(isinstance(m["time"], float) for m in feed.seen if m["type"] == "trade")

        buyer.send({"message": "cancelOrder", "orderId": 3})
        canceled = buyer.until(report)
        assert fill(canceled) == (3, "CANCELED", None, 250)
        assert brief(feed.until(public)) == ("bid", 144, 0)
        buyer.send(order(3, "BUY", 1, 1))  # the orderId is the account's: not twice
        refused = buyer.until(lambda m: m.get("message") == "error")
        assert refused["orderId"] == 3 and "used before" in refused["error"]
    finally:
        for client in (feed, buyer, seller):
            client.close()


BAD_PRIVATE = [
    (b"not json at all", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"createOrder"', "JSON object"),
    (b'{"message": "shout"}', "unknown message"),
    (b'{"orderId": 1}', '"message" is required'),
    (b'{"message": "createOrder"}', '"orderId" is required'),
    (b'{"message": "createOrder", "orderId": "7", "side": "BUY", "price": 1, "quantity": 1}',
     '"orderId" is required: an integer'),
    (b'{"message": "createOrder", "orderId": true, "side": "BUY", "price": 1, "quantity": 1}',
     '"orderId" is required: an integer'),
    (b'{"message": "createOrder", "orderId": -1, "side": "BUY", "price": 1, "quantity": 1}',
     "between 0 and"),
    (b'{"message": "createOrder", "orderId": 1, "side": "HOLD", "price": 1, "quantity": 1}',
     '"side" must be'),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": 1}',
     '"quantity" must be a number'),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": "1", "quantity": 1}',
     '"price" must be a number'),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": -5, "quantity": 1}',
     "must not be negative"),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": 0, "quantity": 1}',
     "greater than zero"),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": 1.00001, "quantity": 1}',
     "more than 4 decimal places"),
    (b'{"message": "createOrder", "orderId": 1, "side": "SELL", "price": 1, "quantity": 0.001}',
     "more than 2 decimal places"),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": 1e400, "quantity": 1}',
     "not a decimal number"),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": NaN, "quantity": 1}',
     "NaN is not a number"),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": 99999999999999999999,'
     b' "quantity": 1}', "too large"),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "quantity": 1}',
     "market buy needs"),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": 1, "quantity": 1,'
     b' "symbol": "no such!"}', '"symbol" must be'),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": 1, "quantity": 1,'
     b' "symbol": "NOSUCHSYMBOL"}', "unknown symbol"),
    (b'{"message": "cancelOrder", "orderId": 99}', "unknown orderId"),
    (b'{"message": "login", "apiKey": "not-a-key"}', "unknown apiKey"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 4000, "nested too deeply"),
    (b"{" + b'"pad": "' + b"x" * 200_000 + b'"}', "line longer than"),
]  # fmt: skip


def test_bad_input_on_the_private_channel_appends_nothing(system):
    start = end_offsets(system.settings)
    client, bystander = LineClient(system.private_port), LineClient(system.private_port)
    try:
        for line, why in BAD_PRIVATE:
            client.send(line + b"\n")
            answer = client.recv()
            assert answer["message"] == "error" and why in answer["error"], (line[:80], answer)
        flood = 3000
        client.send(b"garbage\n" * flood)
        errors = [client.recv() for _ in range(flood)]
        assert all(m["message"] == "error" for m in errors)
        assert any("rate limit" in m["error"] for m in errors)  # the bucket held
        # the flood left the bucket empty: a heartbeat arriving within 1/rate s of its last line
        # is refused as well (a full run saw it once), so let the bucket earn a few tokens first
        time.sleep(5 / ChannelSettings().rate)
        for who in (client, bystander):  # the connection and its neighbours go on
            who.send({"message": "heartbeat"})
            assert who.until(lambda m: m.get("message") == "heartbeat")
    finally:
        client.close()
        bystander.close()
    appended = records_between(system.settings, start, end_offsets(system.settings))
    assert [name for name, _ in appended if name in OURS] == []


BAD_PUBLIC = [
    (b"{{{", "not JSON"),
    (b'{"message": "trade"}', "unknown message"),
    (b'{"message": 5}', '"message" is required'),
    (b'{"message": "subscribe", "symbol": 12}', '"symbol" must be'),
    (b'{"message": "subscribe", "symbol": "NOSUCHSYMBOL"}', "unknown symbol"),
    (b'{"message": "createOrder", "orderId": 1, "side": "BUY", "price": 1, "quantity": 1}',
     "unknown message"),
    (b"x" * 200_000, "line longer than"),
]  # fmt: skip


def test_bad_input_on_the_public_channel(system):
    start = end_offsets(system.settings)
    client = LineClient(system.public_port)
    try:
        assert client.recv()["type"] == "snapshot"
        for line, why in BAD_PUBLIC:
            client.send(line + b"\n")
            answer = client.until(lambda m: m.get("message") == "error")
            assert why in answer["error"], (line[:80], answer)
        client.send(b"nonsense\n" * 2500)
        errors = client.take(2500, lambda m: m.get("message") == "error")
        assert len(errors) == 2500
        client.send({"message": "heartbeat"})
        beat = client.until(lambda m: m.get("type") == "heartbeat")
        assert beat["seq"] >= 1
    finally:
        client.close()
    appended = records_between(system.settings, start, end_offsets(system.settings))
    assert [name for name, _ in appended if name in OURS] == []


def test_a_market_order_and_decimals(system):
    maker, taker = LineClient(system.private_port), LineClient(system.private_port)
    try:
        maker.send(order(10, "SELL", 200.25, 1.5))
        assert maker.until(report)["report"] == "NEW"
        taker.send(
            {"message": "createOrder", "orderId": 11, "side": "BUY", "quantity": 2, "budget": 1000}
        )
        got = [fill(m) for m in taker.take(3, report)]
        assert got == [
            (11, "NEW", None, None),
            (11, "FILL", 200.25, 1.5),
            (11, "CANCELED", None, 0.5),
        ]
        assert fill(maker.until(report)) == (10, "FILL", 200.25, 1.5)
        assert json.dumps(200.25) == "200.25"
    finally:
        maker.close()
        taker.close()


def test_login_with_an_api_key_and_cancel_on_disconnect(system):
    made = httpx.post(
        system.http_url + "/accounts",
        json={"balance": "1000"},
        headers={"Authorization": f"Bearer {system.admin_key}"},
    )
    account, key = made.json()["account_id"], made.json()["api_key"]
    feed, client = LineClient(system.public_port), LineClient(system.private_port)
    try:
        assert feed.recv()["type"] == "snapshot"
        client.send({"message": "login", "apiKey": key})
        assert client.recv() == {"message": "login", "account": account}
        client.send({"message": "login", "apiKey": key})
        assert "before the first order" in client.recv()["error"]
        client.send({"message": "cancelOnDisconnect", "enabled": True})
        assert client.recv() == {"message": "cancelOnDisconnect", "enabled": True}
        client.send(order(21, "BUY", 3.5, 10))
        assert fill(client.until(report)) == (21, "NEW", None, None)
        assert brief(feed.until(public)) == ("bid", 3.5, 10)
        client.send(order(22, "BUY", 3.5, 10000))  # 35,000 > the account's 1,000
        refused = client.until(lambda m: m.get("message") == "error")
        assert refused["orderId"] == 22
    finally:
        client.close()
    try:
        assert brief(feed.until(public)) == ("bid", 3.5, 0)  # cancelled when it left
    finally:
        feed.close()


def test_a_logged_in_account_cancels_an_order_of_its_earlier_connection(system):
    made = httpx.post(
        system.http_url + "/accounts",
        json={"balance": "1000"},
        headers={"Authorization": f"Bearer {system.admin_key}"},
    )
    key = made.json()["api_key"]
    first = LineClient(system.private_port)
    try:
        first.send({"message": "login", "apiKey": key})
        assert first.recv()["message"] == "login"
        first.send(order(31, "BUY", 2.5, 10))
        first.send(order(32, "BUY", 2.5, 20))
        assert [fill(m) for m in first.take(2, report)] == [
            (31, "NEW", None, None),
            (32, "NEW", None, None),
        ]
    finally:
        first.close()  # cancel-on-disconnect is off: both orders stay open
    second, stranger = LineClient(system.private_port), LineClient(system.private_port)
    try:
        second.send({"message": "login", "apiKey": key})
        assert second.recv()["message"] == "login"
        second.send({"message": "cancelOrder", "orderId": 31})
        assert fill(second.until(report)) == (31, "CANCELED", None, 10)
        second.send({"message": "cancelOrder", "orderId": 31})  # no longer open
        again = second.until(lambda m: m.get("message") == "error")
        assert again["orderId"] == 31
        # a reused orderId is refused by the ledger, and a cancel of it still finds the order
        second.send(order(32, "BUY", 2.5, 1))
        refused = second.until(lambda m: m.get("message") == "error")
        assert refused["orderId"] == 32 and "used before" in refused["error"]
        second.send({"message": "cancelOrder", "orderId": 32})
        assert fill(second.until(report)) == (32, "CANCELED", None, 20)
        second.send({"message": "cancelOrder", "orderId": 33})
        unknown = second.until(lambda m: m.get("message") == "error")
        assert unknown["orderId"] == 33 and "unknown orderId" in unknown["error"]
        # another account's connection does not see them
        stranger.send({"message": "cancelOrder", "orderId": 32})
        assert "unknown orderId" in stranger.until(lambda m: m.get("message") == "error")["error"]
    finally:
        second.close()
        stranger.close()
