"""What the load generator offers: accounts with cash and shares, and the orders they send.

Each connection trades as its own account over ``SYMBOLS``, alternating small buys and sells at
three prices around 100, so orders rest, cross and fill, and no account runs out of cash or
shares during a run. ``xml_setup`` and ``http_setup`` open the accounts through the surface
itself and return a connected client with the requests to cycle through.
"""

from __future__ import annotations

import json

from bench.loadgen import ChannelClient, HttpClient, XmlClient

CONNECTIONS = 200
SYMBOLS = [f"B{i}" for i in range(4)]
PER_ACCOUNT = 12  # distinct orders each account cycles through
HTTP_ACCOUNTS = 50
CHANNEL_ACCOUNTS = 50  # one private connection each


async def xml_setup(
    port: int, first_account: int = 700_000, connections: int = CONNECTIONS
) -> tuple[XmlClient, list[list[bytes]]]:
    client = XmlClient("127.0.0.1", port, connections)
    await client.open()
    accounts = [str(first_account + i) for i in range(connections)]
    for first in range(0, len(accounts), 20):  # the gateway caps elements per request
        chunk = accounts[first : first + 20]
        body = "<create>" + "".join(f'<account id="{a}" balance="1000000000"/>' for a in chunk)
        for symbol in SYMBOLS:
            body += (
                f'<symbol sym="{symbol}">'
                + "".join(f'<account id="{a}">1000000</account>' for a in chunk)
                + "</symbol>"
            )
        reply = await client.request((body + "</create>").encode())
        assert b"<error" not in reply, reply[:500]
    bodies = [
        [
            f'<transactions id="{a}"><order sym="{SYMBOLS[(n + k) % len(SYMBOLS)]}" '
            f'amount="{1 if k % 2 else -1}" limit="{99 + (n + k) % 3}"/></transactions>'.encode()
            for k in range(PER_ACCOUNT)
        ]
        for n, a in enumerate(accounts)
    ]
    return client, bodies


async def http_setup(
    port: int, admin: str, connections: int = CONNECTIONS
) -> tuple[HttpClient, list[bytes]]:
    client = HttpClient("127.0.0.1", port, connections)
    await client.open()
    keys = await open_accounts(client, admin, 800_000, HTTP_ACCOUNTS)
    return client, [
        HttpClient.encode("POST", "/orders", key, _http_order(n, k))
        for n, key in enumerate(keys)
        for k in range(PER_ACCOUNT)
    ]


async def channel_setup(
    port: int, http: HttpClient, admin: str, connections: int = CHANNEL_ACCOUNTS
) -> tuple[ChannelClient, list[list[bytes]]]:
    """Accounts opened over HTTP (``http``: a client of the same gateway), one private
    connection logged in to each; each cycles through PER_ACCOUNT orders like the others'."""
    keys = await open_accounts(http, admin, 900_000, connections)
    client = ChannelClient("127.0.0.1", port, keys)
    await client.open()
    return client, [[_channel_order(n, k) for k in range(PER_ACCOUNT)] for n in range(connections)]


async def open_accounts(client: HttpClient, admin: str, first: int, count: int) -> list[str]:
    """``count`` accounts from ``first`` on, with cash and shares of every symbol: their keys."""
    keys = []
    for i in range(count):
        account = str(first + i)
        request = HttpClient.encode(
            "POST", "/accounts", admin, {"account_id": account, "balance": "1000000000"}
        )
        status, body = await client.call(request)
        assert status == 201, body
        keys.append(json.loads(body)["api_key"])
        for symbol in SYMBOLS:
            issue = {"account_id": account, "qty": "1000000"}
            request = HttpClient.encode("POST", f"/symbols/{symbol}/issue", admin, issue)
            status, body = await client.call(request)
            assert status == 200, body
    return keys


def _channel_order(n: int, k: int) -> bytes:
    """A createOrder line with ``{oid}`` for its orderId (bench/loadgen.py ChannelClient)."""
    order = _http_order(n, k)
    return (
        b'{"message":"createOrder","orderId":{oid},"side":"%s","price":%s,"quantity":1,'
        b'"symbol":"%s"}\n'
        % (order["side"].encode(), order["price"].encode(), order["symbol"].encode())
    )


def _http_order(n: int, k: int) -> dict:
    return {
        "symbol": SYMBOLS[(n + k) % len(SYMBOLS)],
        "side": "BUY" if k % 2 else "SELL",
        "qty": "1",
        "price": str(99 + (n + k) % 3),
        "tif": "GTC",
        "stp": "NONE",
    }
