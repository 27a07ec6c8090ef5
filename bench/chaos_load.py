"""The chaos run's load (bench/chaos.py): closed-loop clients on every surface, each keeping its
own record (``Told``) of what it sent and was told.

One account per client, one request at a time, orders that cross on two symbols (so the surfaces
trade with each other): XML (``<order>``, answered after its match), HTTP (``POST /orders``,
answered at acceptance) and the private JSON-line channel (``createOrder``, answered by its NEW
report); and day traders on the line protocol, one user each (bench/chaos_daytrade.py). A client
reconnects when the gateway goes away; a request whose answer never came (the connection lost, or
no answer in ``REQUEST_TIMEOUT_S``) is counted ``unknown`` and never retried.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from bench.chaos_daytrade import DayTold, DayTrader, users

SYMBOLS = ("C0", "C1")
OPENED = re.compile(rb'<opened [^>]*id="(\d+)"')
REQUEST_TIMEOUT_S = 30.0
SURFACES = ("xml", "http", "private", "daytrade")
FIRST_ACCOUNT = {"xml": 900_000, "http": 800_000, "private": 700_000}
SHARE = {"xml": 0.4, "http": 0.2, "private": 0.2, "daytrade": 0.2}  # of the offered rate
PER_CLIENT_RATE = 4.0  # orders per second each client offers


@dataclass
class Told:
    """What one surface's clients sent and were told, per account."""

    sent: Counter = field(default_factory=Counter)
    opened: dict[int, str] = field(default_factory=dict)  # order id -> account (XML, HTTP)
    # (account, client_order_id) of orders told open (HTTP, the private channel)
    opened_client: set[tuple[str, str]] = field(default_factory=set)
    errors: Counter = field(default_factory=Counter)  # refusals by text
    unknown: int = 0  # requests whose answer never came (connection lost or timed out)
    answers: list[tuple[float, float, bool]] = field(default_factory=list)  # sent, answered, ok


@dataclass(frozen=True)
class Ports:
    xml: int
    http: int
    private: int
    daytrade: int
    quotes: int
    admin_key: str


def order_of(n: int, k: int) -> tuple[str, int, int]:
    """Client n's k-th order: symbol, signed quantity (+ buys), limit; they cross and fill."""
    side = 1 if (n + k) % 2 else -1
    return SYMBOLS[k % 2], side * (1 + k % 3), 99 + (n + k) % 3


class Client:
    """One account's closed loop; a surface says how one order is sent and what the answer was."""

    surface = ""

    def __init__(self, ports: Ports, account: str, n: int, told: Told) -> None:
        self.ports, self.account, self.n, self.told = ports, account, n, told

    async def place(self, k: int, symbol: str, qty: int, limit: int) -> bool | None:
        """True: told open; False: refused; None: no answer."""
        raise NotImplementedError

    async def close(self) -> None:
        """Drop the connection (a lost or timed-out request leaves it in an unknown state)."""

    async def trade(self, going: Callable[[], bool], interval: float) -> None:
        k = 0
        while going():
            began = time.monotonic()
            self.told.sent[self.account] += 1
            try:
                ok = await asyncio.wait_for(self.place(k, *order_of(self.n, k)), REQUEST_TIMEOUT_S)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, httpx.TransportError):
                ok = None
            answered = time.monotonic()
            if ok is None:
                self.told.unknown += 1
                await self.close()
                await asyncio.sleep(0.2)  # the gateway may be down: do not spin
            self.told.answers.append((began, answered, bool(ok)))
            k += 1
            await asyncio.sleep(max(0.0, interval - (answered - began)))
        await self.close()


class XmlClient(Client):
    surface = "xml"
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, body: bytes) -> bytes:
        if self.conn is None:
            self.conn = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.ports.xml), 2
            )
        reader, writer = self.conn
        writer.write(b"%d\n%s" % (len(body), body))
        return await reader.readuntil(b"</results>")

    async def place(self, k: int, symbol: str, qty: int, limit: int) -> bool:
        body = (
            f'<transactions id="{self.account}"><order sym="{symbol}" '
            f'amount="{qty}" limit="{limit}"/></transactions>'
        ).encode()
        reply = await self.request(body)
        found = OPENED.search(reply)
        if found:
            self.told.opened[int(found.group(1))] = self.account
            return True
        self.told.errors[reply.decode(errors="replace")[:120]] += 1
        return False

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
        self.conn = None


class HttpClient(Client):
    surface = "http"

    def __init__(self, ports: Ports, account: str, n: int, told: Told, key: str) -> None:
        super().__init__(ports, account, n, told)
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports.http}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=REQUEST_TIMEOUT_S,
        )

    async def place(self, k: int, symbol: str, qty: int, limit: int) -> bool:
        coid = f"h{k}"
        order = {"symbol": symbol, "side": "BUY" if qty > 0 else "SELL", "type": "LIMIT"}
        order |= {"qty": str(abs(qty)), "price": str(limit), "client_order_id": coid}
        reply = await self.http.post("/orders", json=order)
        if reply.status_code == 201:
            self.told.opened[reply.json()["order_id"]] = self.account
            self.told.opened_client.add((self.account, coid))
            return True
        self.told.errors[f"{reply.status_code} {reply.text[:100]}"] += 1
        return False

    async def close(self) -> None:
        pass  # httpx opens a new connection when the old one is gone; nothing is resent

    async def aclose(self) -> None:
        await self.http.aclose()


class ChannelClient(Client):
    """The private channel, logged in with the account's API key."""

    surface = "private"
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def __init__(self, ports: Ports, account: str, n: int, told: Told, key: str) -> None:
        super().__init__(ports, account, n, told)
        self.key = key

    async def send(self, message: dict) -> None:
        assert self.conn is not None
        self.conn[1].write(json.dumps(message).encode() + b"\n")

    async def answer(self, matches: Callable[[dict], bool]) -> dict:
        """The next line that answers this request (the account's other reports pass by)."""
        assert self.conn is not None
        while True:
            line = await self.conn[0].readuntil(b"\n")
            message = json.loads(line)
            if matches(message):
                return message

    async def connect(self) -> None:
        self.conn = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.ports.private), 2
        )
        await self.send({"message": "login", "apiKey": self.key})
        told = await self.answer(lambda m: m.get("message") in ("login", "error"))
        if told.get("message") != "login":
            raise OSError(f"login refused: {told}")

    async def place(self, k: int, symbol: str, qty: int, limit: int) -> bool:
        if self.conn is None:
            await self.connect()
        oid = k + 1  # never reused: the account's client order ids
        side = "BUY" if qty > 0 else "SELL"
        await self.send(
            {"message": "createOrder", "orderId": oid, "side": side, "price": limit}
            | {"quantity": abs(qty), "symbol": symbol}
        )
        told = await self.answer(
            lambda m: (
                m.get("orderId") == oid
                and (m.get("message") == "error" or m.get("report") == "NEW")
            )
        )
        if told.get("report") == "NEW":
            self.told.opened_client.add((self.account, str(oid)))
            return True
        self.told.errors[str(told.get("error"))[:120]] += 1
        return False

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
        self.conn = None


def clients_of(surface: str, rate: float) -> int:
    return max(2, round(rate * SHARE[surface] / PER_CLIENT_RATE))


def accounts_of(surface: str, rate: float) -> list[str]:
    return [str(FIRST_ACCOUNT[surface] + i) for i in range(clients_of(surface, rate))]


async def open_accounts(ports: Ports, rate: float) -> dict[str, str]:
    """XML's accounts and the symbols through XML; HTTP's and the channel's through the admin API
    (their API keys, returned by account), with shares of both symbols."""
    setup = XmlClient(ports, "setup", 0, Told())
    xml = accounts_of("xml", rate)
    for first in range(0, len(xml), 20):
        chunk = xml[first : first + 20]
        body = "<create>" + "".join(f'<account id="{a}" balance="100000000"/>' for a in chunk)
        for symbol in SYMBOLS:
            body += f'<symbol sym="{symbol}">'
            body += "".join(f'<account id="{a}">1000000</account>' for a in chunk) + "</symbol>"
        reply = await asyncio.wait_for(setup.request((body + "</create>").encode()), 60)
        if b"<error" in reply:
            raise RuntimeError(f"could not open the accounts: {reply!r}")
    await setup.close()
    keys = {}
    admin = {"Authorization": f"Bearer {ports.admin_key}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ports.http}", headers=admin, timeout=60
    ) as http:
        for account in accounts_of("http", rate) + accounts_of("private", rate):
            made = await http.post("/accounts", json={"account_id": account, "balance": "1000000"})
            made.raise_for_status()
            keys[account] = made.json()["api_key"]
            for symbol in SYMBOLS:
                issued = await http.post(
                    f"/symbols/{symbol}/issue", json={"account_id": account, "qty": "1000000"}
                )
                issued.raise_for_status()
    return keys


async def load(
    ports: Ports,
    rate: float,
    keys: dict[str, str],
    told: dict[str, Told | DayTold],
    going: Callable[[], bool],
) -> None:
    clients: list[Client | DayTrader] = []
    for n, account in enumerate(accounts_of("xml", rate)):
        clients.append(XmlClient(ports, account, n, told["xml"]))
    for n, account in enumerate(accounts_of("http", rate)):
        clients.append(HttpClient(ports, account, n, told["http"], keys[account]))
    for n, account in enumerate(accounts_of("private", rate)):
        clients.append(ChannelClient(ports, account, n, told["private"], keys[account]))
    for n, user in enumerate(users(clients_of("daytrade", rate))):
        clients.append(DayTrader(ports.daytrade, user, n, told["daytrade"]))
    interval = 1 / PER_CLIENT_RATE
    try:
        await asyncio.gather(*(c.trade(going, interval) for c in clients))
    finally:
        for client in clients:
            if isinstance(client, HttpClient):
                await client.aclose()
