"""Answering one parsed XML request: append its commands, render the decisions and reads.

``<create>`` children run one after another (an account created by one child exists for the
next). ``<transactions>`` children are appended in request order without waiting for each
decision (the ledger decides them in that order anyway). An ``<order>`` is answered once it has
been matched and every settlement of its match is decided (its fills, its refund, its
counterparties' proceeds). A ``<query>`` first waits for every earlier child's answer, then for
the projection to show every decision any answer of this gateway has reflected.
"""

from __future__ import annotations

import asyncio
import logging

from . import commands as cmd
from . import xml_reply as reply
from .bus import AppendError, DecisionTimeout, Event
from .commands import ACCOUNT, REJECTED, OrderSpec
from .exchange import Exchange, Session
from .projection import OrderView, ProjectionTimeout
from .xml_request import (
    AddShares,
    Attrs,
    CreateRequest,
    NewAccount,
    Order,
    Query,
    Rejected,
    Request,
    TransactionsRequest,
)

log = logging.getLogger(__name__)

UNKNOWN_ORDER = "unknown order id for this account"
FAILURES = (DecisionTimeout, AppendError, ProjectionTimeout)


async def handle(exchange: Exchange, request: Request, session: Session) -> list[str]:
    if isinstance(request, CreateRequest):
        return [await _create_item(exchange, item, session) for item in request.items]
    return await _transactions(exchange, request, session)


def _why(event: Event) -> str:
    return event.record.get("reason") or "rejected"


# -- <create> ------------------------------------------------------------------------------------
async def _create_item(exchange: Exchange, item, session: Session) -> str:
    if isinstance(item, Rejected):
        return reply.error(item.attrs, item.message)
    if isinstance(item, NewAccount):
        attrs: Attrs = (("id", item.account),)
        try:
            event = await exchange.request(
                cmd.create_account(exchange.stamp(), item.account, item.balance), session
            )
        except FAILURES as exc:
            return reply.error(attrs, str(exc))
        return (
            reply.created(item.account)
            if event.name != REJECTED
            else reply.error(attrs, _why(event))
        )
    return await _add_shares(exchange, item, session)


async def _add_shares(exchange: Exchange, item: AddShares, session: Session) -> str:
    attrs: Attrs = (("sym", item.symbol), ("id", item.account))
    try:
        if not await exchange.directory.has_account(item.account):
            return reply.error(attrs, f"unknown account {item.account}")
        if not await exchange.directory.has_symbol(item.symbol):
            # listing is idempotent in the ledger (created=false if a peer listed it first)
            event = await exchange.request(cmd.create_symbol(exchange.stamp(), item.symbol))
            if event.name == REJECTED:
                return reply.error(attrs, _why(event))
        event = await exchange.request(
            cmd.issue_shares(exchange.stamp(), item.account, item.symbol, item.qty), session
        )
    except FAILURES as exc:
        return reply.error(attrs, str(exc))
    if event.name == REJECTED:
        return reply.error(attrs, _why(event))
    return reply.created(item.account, item.symbol)


# -- <transactions> ------------------------------------------------------------------------------
def _child_attrs(item) -> Attrs:
    if isinstance(item, Order):
        return item.attrs
    if isinstance(item, Rejected):
        return item.attrs
    return (("id", str(item.order_id)),)


async def _transactions(
    exchange: Exchange, request: TransactionsRequest, session: Session
) -> list[str]:
    account = request.account
    if account is None:
        return [reply.error(i.attrs, i.message) for i in request.items if isinstance(i, Rejected)]
    try:
        known = await exchange.directory.has_account(account)
    except ProjectionTimeout as exc:
        return [reply.error(_child_attrs(i), str(exc)) for i in request.items]
    if not known:
        return [reply.error(_child_attrs(i), f"unknown account {account}") for i in request.items]
    answers: list[asyncio.Future] = []
    for item in request.items:
        answers.append(await _start(exchange, account, item, session, list(answers)))
    return list(await asyncio.gather(*answers))


async def _start(
    exchange: Exchange, account: str, item, session: Session, earlier: list
) -> asyncio.Future:
    """Append the child's command now; return what finishes its answer."""
    if isinstance(item, Rejected):
        return _done(reply.error(item.attrs, item.message))
    if isinstance(item, Query):
        return asyncio.ensure_future(_query(exchange, account, item, session, earlier))
    if isinstance(item, Order):
        try:
            if not await exchange.directory.has_symbol(item.symbol):
                return _done(reply.error(item.attrs, f"unknown symbol {item.symbol}"))
        except ProjectionTimeout as exc:
            return _done(reply.error(item.attrs, str(exc)))
        side = "BUY" if item.qty > 0 else "SELL"
        # the original semantics: no self-trade prevention on this surface
        command = cmd.place_order(
            exchange.stamp(), account, OrderSpec(item.symbol, side, abs(item.qty), item.price)
        )
    else:
        command = cmd.cancel_order(exchange.stamp(), account, item.order_id)
    # in request order; a failed write fails the decision. An order is answered once matched
    # and settled, as every server of this protocol does: the client's next request sees it.
    future = exchange.bus.submit(command, placed=isinstance(item, Order))
    return asyncio.ensure_future(_finish(exchange, account, item, command, future, session))


def _done(text: str) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(text)
    return future


async def _finish(exchange: Exchange, account: str, item, command, future, session) -> str:
    attrs = _child_attrs(item)
    try:
        event = await exchange.bus.decision(command, future)
    except FAILURES as exc:
        return reply.error(attrs, str(exc))
    exchange.answering(event, session)
    if event.name == REJECTED:
        return reply.error(attrs, _why(event))
    if isinstance(item, Order):
        return reply.opened(item.attrs, event.record["order_id"])
    # a cancel: its own part, then every earlier fill, from the projection
    try:
        await exchange.caught_up(session)
        view = await exchange.projection.order(account, item.order_id)
    except FAILURES as exc:
        return reply.error(attrs, str(exc))
    closed = reply.Canceled(event.record["qty"], reply.seconds(event.record["envelope"]["ts"]))
    return reply.canceled(item.order_id, [closed, *_executions(view)])


async def _query(exchange: Exchange, account: str, item: Query, session, earlier: list) -> str:
    await asyncio.gather(*earlier)  # every earlier child decided and noted in the session
    attrs = _child_attrs(item)
    try:
        await exchange.caught_up(session)
        view = await exchange.projection.order(account, item.order_id)
    except FAILURES as exc:
        return reply.error(attrs, str(exc))
    if view is None:
        return reply.error(attrs, UNKNOWN_ORDER)
    return reply.status(item.order_id, status_entries(view))


def _executions(view: OrderView | None) -> list[reply.Entry]:
    if view is None:
        return []
    return [reply.Executed(e["qty"], e["price"], reply.seconds(e["ts"])) for e in view.executions]


def status_entries(view: OrderView) -> list[reply.Entry]:
    """At most one of open / canceled, then one executed per fill."""
    order = view.order
    entries: list[reply.Entry] = []
    if order["open_qty"] > 0:
        entries.append(reply.Open(order["open_qty"]))
    elif order["cancelled_qty"] > 0:
        ts = order["cancelled_ts"] or order["updated_ts"]
        entries.append(reply.Canceled(order["cancelled_qty"], reply.seconds(ts)))
    return entries + _executions(view)


__all__ = ["ACCOUNT", "handle", "status_entries"]
