"""The private channel (TCP 7001, docs/channels.md): createOrder / cancelOrder in, executionReport
out, one JSON object per line.

A connection trades as one account: the account of ``{"message":"login","apiKey":…}`` if it logs
in first, otherwise a fresh account opened on its first order (cash and shares from the settings,
as an ordinary CreateAccount and IssueShares in the log). Every report comes from the account's
decisions on account.events, in log order: NEW (OrderAccepted), FILL (OrderFilled, both sides of
every match reach their own connections), CANCELED (OrderClosed). A refused command is an
``error`` naming the orderId. The client's orderId is the order's client_order_id in the log, so it
is scoped to the account and a reused one is refused; a logged-in connection cancels by orderId an
open order the account placed before it (on an earlier connection, or another surface), found in
the projection after the account's writes. A connection sent nothing for
``MARKETLOG_CHANNEL_HEARTBEAT_S`` is sent ``{"message":"heartbeat"}`` (one sweep per server).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from typing import Any

from services.common.money import parse_cash, parse_qty

from ..bus import AppendError, DecisionTimeout, Event
from ..commands import ACCEPTED, ACCOUNT, FILLED, REJECTED, OrderSpec
from ..config import ChannelSettings
from ..desk import Desk
from ..sessions import Session
from . import wire
from .wire_lines import LineConnection, LineServer

log = logging.getLogger(__name__)
CLOSED = ACCOUNT + "OrderClosed"
HEARTBEAT = wire.render({"message": "heartbeat"})
PAGE = 500  # open orders read per query when looking an earlier orderId up


class Refused(Exception):
    """A request the exchange refused; the message is for the client."""


def _granted(event: Event) -> Event:
    if event.name == REJECTED:
        raise Refused(event.record["reason"])
    return event


class PrivateServer(LineServer):
    def __init__(self, desk: Desk, settings: ChannelSettings) -> None:
        super().__init__(
            settings, settings.private_port, "private", settings.private_heartbeat, HEARTBEAT
        )
        self.desk = desk
        self.cash = parse_cash(settings.cash)
        self.shares = parse_qty(settings.shares)
        self.background: set[asyncio.Task] = set()  # cancels on disconnect, still under way

    def connection(self, reader, writer) -> PrivateConnection:
        return PrivateConnection(self, reader, writer)

    def keep(self, task: asyncio.Task) -> None:
        self.background.add(task)
        task.add_done_callback(self.background.discard)


async def list_default_symbol(desk: Desk, settings: ChannelSettings, attempts: int = 3) -> None:
    """List the default symbol unless it is known (a listed symbol is not an error); tried again
    while the ledger does not answer, never after a refusal."""
    symbol = settings.default_symbol
    for _ in range(attempts):
        if await desk.knows_symbol(symbol):
            return
        try:
            _granted(await desk.list_symbol(symbol))
            return
        except Refused as exc:
            log.error("the default symbol %s could not be listed: %s", symbol, exc)
            return
        except (DecisionTimeout, AppendError) as exc:
            log.warning("listing the default symbol %s: %s", symbol, exc)
    log.error("the default symbol %s is not listed: the ledger did not answer", symbol)


class PrivateConnection(LineConnection):
    def __init__(self, server: PrivateServer, reader, writer) -> None:
        super().__init__(server.settings, reader, writer)
        self.server = server
        self.desk = server.desk
        self.session = Session()
        self.account: str | None = None
        self.logged_in = False  # the account may have orders from before this connection
        self.cancel_on_disconnect = server.settings.cancel_on_disconnect
        self._opening: asyncio.Future | None = None
        self._decisions = contextlib.ExitStack()
        self.orders: dict[int, asyncio.Future] = {}  # orderId -> exchange order id (None: refused)
        self.client_ids: dict[int, tuple[int, str]] = {}  # exchange order id -> (orderId, symbol)
        self.live: set[int] = set()  # exchange ids of the account's orders that may still trade
        self.answers: set[asyncio.Task] = set()

    # -- requests ----------------------------------------------------------------------------
    async def handle(self, line: bytes) -> None:
        try:
            request = wire.parse_private(line, self.settings.default_symbol)
            if isinstance(request, wire.CreateOrder):
                await self._create(request)
            elif isinstance(request, wire.CancelOrder):
                await self._cancel(request)
            elif isinstance(request, wire.Login):
                await self._login(request)
            elif isinstance(request, wire.CancelOnDisconnect):
                self.cancel_on_disconnect = request.enabled
                self.send(
                    wire.render({"message": "cancelOnDisconnect", "enabled": request.enabled})
                )
            else:
                self.send(HEARTBEAT)
        except wire.WireError as exc:
            self.send(wire.error(exc.message, exc.order_id))

    async def _create(self, request: wire.CreateOrder) -> None:
        oid = request.order_id
        if oid in self.orders:
            raise wire.WireError(f"orderId {oid} was used before on this account", oid)
        if not await self.desk.knows_symbol(request.symbol):
            raise wire.WireError(f"unknown symbol {request.symbol}", oid)
        account = await self._trading_account(oid)
        spec = OrderSpec(
            symbol=request.symbol,
            side=request.side,
            qty=request.qty,
            price=request.price,
            tif="GTC" if request.price is not None else "IOC",
            budget=request.budget,
            client_order_id=str(oid),
        )
        self.orders[oid] = asyncio.get_running_loop().create_future()
        self._answered(oid, self.desk.place_order(account, spec, self.session, surface="private"))

    async def _cancel(self, request: wire.CancelOrder) -> None:
        oid = request.order_id
        exchange_id = await self._exchange_id(oid)
        assert self.account is not None
        self._answered(oid, self.desk.cancel_order(self.account, exchange_id, self.session))

    async def _exchange_id(self, oid: int) -> int:
        """The exchange's id of the account's order ``oid``: one this connection placed or heard
        accepted, else (logged in) an open one the account placed before this connection."""
        placed = self.orders.get(oid)
        if self.account is None or (placed is None and not self.logged_in):
            raise wire.WireError(f"unknown orderId {oid}", oid)
        if placed is not None:
            try:
                async with asyncio.timeout(self.desk.projection_timeout):
                    exchange_id = await asyncio.shield(placed)
            except TimeoutError:
                raise wire.WireError(f"orderId {oid} is not accepted yet", oid) from None
            if exchange_id is not None:
                return exchange_id
            if not self.logged_in:
                raise wire.WireError(f"orderId {oid} was refused", oid)
        found = await self._earlier(oid)  # a refused reuse of an earlier orderId lands here too
        if found is None:
            if placed is not None:
                raise wire.WireError(f"orderId {oid} was refused", oid)
            raise wire.WireError(f"unknown orderId {oid}: no open order of this account", oid)
        return found

    async def _earlier(self, oid: int) -> int | None:
        """The open order of the account whose client_order_id is ``oid``, as the projection
        shows it after this connection's and this gateway's answered writes; it becomes this
        connection's (its FILL and CANCELED reports come here from now on)."""
        account, text, before = self.account, str(oid), None
        assert account is not None
        while True:
            try:
                rows = await self.desk.orders(account, self.session, "open", None, PAGE, before)
            except TimeoutError as exc:  # ProjectionTimeout
                raise wire.WireError(f"orderId {oid} could not be looked up: {exc}", oid) from None
            row = next((r for r in rows if r["client_order_id"] == text), None)
            if row is not None:
                break
            if len(rows) < PAGE:
                return None
            before = rows[-1]["order_id"]
        exchange_id = row["order_id"]
        self.client_ids.setdefault(exchange_id, (oid, row["symbol"]))
        self.live.add(exchange_id)
        known = self.orders[oid] = asyncio.get_running_loop().create_future()  # was none/refused
        known.set_result(exchange_id)
        return exchange_id

    async def _login(self, request: wire.Login) -> None:
        if self.account is not None or self._opening is not None:
            raise wire.WireError("login must come before the first order")
        account = await self.desk.account_for_key(
            hashlib.sha256(request.api_key.encode()).hexdigest()
        )
        if account is None:
            raise wire.WireError("unknown apiKey")
        self._trade_as(account)
        self.logged_in = True
        self.send(wire.render({"message": "login", "account": account}))

    # -- the account -------------------------------------------------------------------------
    async def _trading_account(self, oid: int) -> str:
        if self.account is not None and self._opening is None:
            return self.account
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open_fresh())
        try:
            await asyncio.shield(self._opening)
        except (Refused, DecisionTimeout, AppendError) as exc:
            self._opening = None
            self._leave()
            raise wire.WireError(f"could not open an account: {exc}", oid) from None
        self._opening = None
        assert self.account is not None
        return self.account

    async def _open_fresh(self) -> None:
        """A new account with the channel's cash and shares of the default symbol."""
        account = str(secrets.randbelow(9 * 10**15) + 10**15)
        self._trade_as(account)
        server, session = self.server, self.session
        created = self.desk.open_account(account, server.cash, session)
        issued = self.desk.issue_shares(
            account, self.settings.default_symbol, server.shares, session
        )
        _granted(await created)
        if server.shares:
            _granted(await issued)

    def _trade_as(self, account: str) -> None:
        self.account = account
        self._decisions.enter_context(self.desk.decisions_about(account, self._heard))

    def _leave(self) -> None:
        self._decisions.close()
        self.account = None

    # -- answers and reports -----------------------------------------------------------------
    def _answered(self, oid: int, answer) -> None:
        task = asyncio.ensure_future(self._refusal(oid, answer))
        self.answers.add(task)
        task.add_done_callback(self.answers.discard)

    async def _refusal(self, oid: int, answer) -> None:
        """Waits for a command's answer: reports come from the decisions, refusals from here."""
        try:
            event = await answer
        except (DecisionTimeout, AppendError) as exc:
            self._refused(oid, str(exc))
            return
        if event.name == REJECTED:
            self._refused(oid, event.record["reason"])
        elif event.name == ACCEPTED and event.record["duplicate"]:
            self._refused(oid, f"orderId {oid} was used before on this account")

    def _refused(self, oid: int, reason: str) -> None:
        placed = self.orders.get(oid)
        if placed is not None and not placed.done():
            placed.set_result(None)
        self.send(wire.error(reason, oid))

    def _heard(self, event: Event) -> None:
        """A decision about the account, as it is heard (log order)."""
        name, r = event.name, event.record
        if name == ACCEPTED:
            if not r["duplicate"]:
                self._accepted(r)
            return
        known = self.client_ids.get(r.get("order_id", -1))
        if known is None:
            return
        oid, symbol = known
        if name == FILLED:
            if not r["remaining"]:
                self.live.discard(r["order_id"])
            self.send(self._report(oid, "FILL", symbol, r, remaining=wire.qty(r["remaining"])))
        elif name == CLOSED:
            self.live.discard(r["order_id"])
            self.send(self._report(oid, "CANCELED", symbol, r, reason=r["reason"]))

    def _accepted(self, r: dict[str, Any]) -> None:
        text = r["client_order_id"]
        if not text.isdigit():  # an order of another surface: not this channel's to report
            return
        oid = int(text)
        self.client_ids[r["order_id"]] = (oid, r["symbol"])
        self.live.add(r["order_id"])
        placed = self.orders.setdefault(oid, asyncio.get_running_loop().create_future())
        if not placed.done():
            placed.set_result(r["order_id"])
        self.send(wire.execution_report(oid, "NEW", r["symbol"]))

    @staticmethod
    def _report(oid: int, kind: str, symbol: str, r: dict[str, Any], **extra: Any) -> bytes:
        if kind == "FILL":
            extra = {"price": wire.price(r["price"]), "quantity": wire.qty(r["qty"])} | extra
        else:
            extra = {"quantity": wire.qty(r["qty"])} | extra
        return wire.execution_report(oid, kind, symbol, **extra)

    async def close(self) -> None:
        await super().close()
        if self.cancel_on_disconnect and self.account is not None and self.live:
            account, session = self.account, self.session
            cancels = [self.desk.cancel_order(account, oid, session) for oid in sorted(self.live)]
            self.server.keep(asyncio.ensure_future(_settle(cancels)))
        self._decisions.close()


async def _settle(answers: list) -> None:
    await asyncio.gather(*answers, return_exceptions=True)
