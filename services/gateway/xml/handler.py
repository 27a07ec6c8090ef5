"""Answering one XML request: parse the body, ask the desk, render the ``<results>`` document.

``<create>`` children run one after another (an account created by one child exists for the
next). ``<transactions>`` children are appended in request order without waiting for each
decision (the ledger decides them in that order anyway). An ``<order>`` is answered once it has
been matched and every settlement of its match is decided (its fills, its refund, its
counterparties' proceeds). A ``<query>`` first waits for every earlier child's answer, then for
the projection to show every decision any answer of this gateway has reflected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from ..bus import AppendError, DecisionTimeout, Event
from ..commands import REJECTED, OrderSpec
from ..desk import Desk
from ..projection import ProjectionTimeout
from ..sessions import Session
from .reply import (
    Answer,
    Cancellation,
    Created,
    Opened,
    OrderStatus,
    Refused,
    document,
    document_error,
)
from .request import (
    AddShares,
    Cancel,
    CreateItem,
    CreateRequest,
    NewAccount,
    Order,
    Query,
    Rejected,
    RequestError,
    TransactionItem,
    TransactionsRequest,
    parse_request,
)

UNKNOWN_ORDER = "unknown order id for this account"
FAILURES = (DecisionTimeout, AppendError, ProjectionTimeout)


async def answer(desk: Desk, body: bytes, session: Session, max_elements: int) -> bytes:
    """The reply document to one request body; never raises for bad input."""
    try:
        request = parse_request(body, max_elements)
    except RequestError as exc:
        return document_error(str(exc))
    if isinstance(request, CreateRequest):
        return document([await _create(desk, item, session) for item in request.items])
    return document(await _transactions(desk, request, session))


def _why(event: Event) -> str:
    return event.record.get("reason") or "rejected"


# -- <create> ------------------------------------------------------------------------------------
async def _create(desk: Desk, item: CreateItem, session: Session) -> Answer:
    if isinstance(item, Rejected):
        return Refused(item.attrs, item.message)
    if isinstance(item, NewAccount):
        return await _open_account(desk, item, session)
    return await _add_shares(desk, item, session)


async def _open_account(desk: Desk, item: NewAccount, session: Session) -> Answer:
    attrs = (("id", item.account),)
    try:
        event = await desk.open_account(item.account, item.balance, session)
    except FAILURES as exc:
        return Refused(attrs, str(exc))
    if event.name == REJECTED:
        return Refused(attrs, _why(event))
    return Created(item.account)


async def _add_shares(desk: Desk, item: AddShares, session: Session) -> Answer:
    attrs = (("sym", item.symbol), ("id", item.account))
    try:
        if not await desk.has_account(item.account):
            return Refused(attrs, f"unknown account {item.account}")
        if not await desk.has_symbol(item.symbol):
            # listing is idempotent in the ledger (created=false if a peer listed it first)
            event = await desk.list_symbol(item.symbol)
            if event.name == REJECTED:
                return Refused(attrs, _why(event))
        event = await desk.issue_shares(item.account, item.symbol, item.qty, session)
    except FAILURES as exc:
        return Refused(attrs, str(exc))
    if event.name == REJECTED:
        return Refused(attrs, _why(event))
    return Created(item.account, item.symbol)


# -- <transactions> ------------------------------------------------------------------------------
async def _transactions(desk: Desk, request: TransactionsRequest, session: Session) -> list[Answer]:
    account = request.account
    if account is None:
        return [Refused(i.attrs, i.message) for i in request.items if isinstance(i, Rejected)]
    try:
        known = await desk.has_account(account)
    except ProjectionTimeout as exc:
        return [Refused(i.attrs, str(exc)) for i in request.items]
    if not known:
        return [Refused(i.attrs, f"unknown account {account}") for i in request.items]
    answers: list[asyncio.Future[Answer]] = []
    for item in request.items:
        answers.append(await _start(desk, account, item, session, list(answers)))
    return list(await asyncio.gather(*answers))


async def _start(
    desk: Desk, account: str, item: TransactionItem, session: Session, earlier: list
) -> asyncio.Future[Answer]:
    """Append the child's command now; return what finishes its answer."""
    if isinstance(item, Rejected):
        return _done(Refused(item.attrs, item.message))
    if isinstance(item, Query):
        return asyncio.ensure_future(_query(desk, account, item, session, earlier))
    if isinstance(item, Order):
        try:
            if not await desk.has_symbol(item.symbol):
                return _done(Refused(item.attrs, f"unknown symbol {item.symbol}"))
        except ProjectionTimeout as exc:
            return _done(Refused(item.attrs, str(exc)))
        side = "BUY" if item.qty > 0 else "SELL"
        # the original semantics: no self-trade prevention on this surface. An order is
        # answered once matched and settled, as every server of this protocol does: the
        # client's next request sees it.
        spec = OrderSpec(item.symbol, side, abs(item.qty), item.price)
        decision = desk.place_order(account, spec, session, matched=True)
    else:
        decision = desk.cancel_order(account, item.order_id, session)
    # appended now, in request order; a failed write fails the decision
    return asyncio.ensure_future(_finish(desk, account, item, decision, session))


def _done(answer: Answer) -> asyncio.Future[Answer]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(answer)
    return future


async def _finish(
    desk: Desk, account: str, item: Order | Cancel, decision: Awaitable[Event], session: Session
) -> Answer:
    try:
        event = await decision
    except FAILURES as exc:
        return Refused(item.attrs, str(exc))
    if event.name == REJECTED:
        return Refused(item.attrs, _why(event))
    if isinstance(item, Order):
        return Opened(item.attrs, event.record["order_id"])
    # a cancel: its own part, then every earlier fill, from the projection
    try:
        view = await desk.order(account, item.order_id, session)
    except FAILURES as exc:
        return Refused(item.attrs, str(exc))
    return Cancellation(item.order_id, event.record["qty"], event.record["envelope"]["ts"], view)


async def _query(desk: Desk, account: str, item: Query, session: Session, earlier: list) -> Answer:
    await asyncio.gather(*earlier)  # every earlier child decided and noted in the session
    try:
        view = await desk.order(account, item.order_id, session)
    except FAILURES as exc:
        return Refused(item.attrs, str(exc))
    if view is None:
        return Refused(item.attrs, UNKNOWN_ORDER)
    return OrderStatus(item.order_id, view)
