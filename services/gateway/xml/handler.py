"""Answering XML requests: parse a body, append its commands, then render its ``<results>``.

A request is answered in two halves, so a connection can pipeline its requests (``server``):
``parse``, then ``start`` appends its commands at once, in request order, and returns its reply
(``bytes``) or what makes it (a ``Later``, awaited in turn: the connection awaits each request's
``Later`` only after every earlier request of the connection is answered). Hence:

- ``<transactions>`` children are appended in request order without waiting for each decision
  (the ledger decides them in that order anyway), and a connection's requests in arrival order.
- An ``<order>`` is answered once it has been matched and every settlement of its match is decided
  (its fills, its refund, its counterparties' proceeds).
- A ``<query>`` (and a ``<cancel>``'s read of the order's earlier fills) first waits for every
  earlier child of the connection to be answered, earlier requests' included, then for the
  projection to show every decision any answer of this gateway has reflected.
- ``<create>`` children run one after another (an account created by one child exists for the
  next); ``start`` runs the whole request before it returns, and the connection starts a
  ``<create>`` only once every earlier request is answered and the next request only after it.
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


Request = CreateRequest | TransactionsRequest


class Later:
    """A request's reply once its children are answered: awaiting it answers them one after
    another, in request order (await it after every earlier request's reply). Its commands were
    appended when it was made; ``close`` drops it unawaited (the gateway stops)."""

    __slots__ = ("account", "children", "desk", "session")

    def __init__(self, desk: Desk, account: str, session: Session, children: list) -> None:
        self.desk, self.account, self.session = desk, account, session
        # each an Answer already, or (the child, its decision's awaitable; None for a query)
        self.children = children

    def __await__(self):
        return self._answers().__await__()

    async def _answers(self) -> bytes:
        desk, account, session = self.desk, self.account, self.session
        answers: list[Answer] = []
        for child in self.children:
            if type(child) is not tuple:
                answers.append(child)
                continue
            item, decision = child
            if decision is None:  # every earlier child is answered and noted by now
                answers.append(await _query(desk, account, item, session))
            else:
                answers.append(await _finish(desk, account, item, decision, session))
        return document(answers)

    def close(self) -> None:
        for child in self.children:
            if type(child) is tuple and asyncio.iscoroutine(child[1]):
                child[1].close()


# a request's reply, or what makes it
Pending = bytes | Later


def parse(body: bytes, max_elements: int) -> Request | bytes:
    """The request in a body, or the error document that answers it."""
    try:
        return parse_request(body, max_elements)
    except RequestError as exc:
        return document_error(str(exc))


async def start(desk: Desk, request: Request, session: Session) -> Pending:
    """Append the request's commands now, in request order; its reply, or what makes it.

    A ``<create>`` runs whole here (its children one after another): call it only once every
    earlier request of the connection is answered."""
    if isinstance(request, CreateRequest):
        return document([await _create(desk, item, session) for item in request.items])
    return await _transactions(desk, request, session)


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
async def _transactions(desk: Desk, request: TransactionsRequest, session: Session) -> Pending:
    account = request.account
    if account is None:
        return document(
            [Refused(i.attrs, i.message) for i in request.items if isinstance(i, Rejected)]
        )
    try:
        known = await desk.has_account(account)
    except ProjectionTimeout as exc:
        return document([Refused(i.attrs, str(exc)) for i in request.items])
    if not known:
        return document([Refused(i.attrs, f"unknown account {account}") for i in request.items])
    children = [await _start(desk, account, item, session) for item in request.items]
    if all(type(child) is not tuple for child in children):
        return document(children)
    return Later(desk, account, session, children)


async def _start(
    desk: Desk, account: str, item: TransactionItem, session: Session
) -> Answer | tuple[TransactionItem, Awaitable[Event] | None]:
    """Append the child's command now; its answer, or the child and its decision's awaitable."""
    if isinstance(item, Rejected):
        return Refused(item.attrs, item.message)
    if isinstance(item, Query):
        return (item, None)
    if isinstance(item, Order):
        try:
            if not await desk.has_symbol(item.symbol):
                return Refused(item.attrs, f"unknown symbol {item.symbol}")
        except ProjectionTimeout as exc:
            return Refused(item.attrs, str(exc))
        side = "BUY" if item.qty > 0 else "SELL"
        # the original semantics: no self-trade prevention on this surface. An order is
        # answered once matched and settled, as every server of this protocol does: the
        # client's next request sees it.
        spec = OrderSpec(item.symbol, side, abs(item.qty), item.price)
        decision = desk.place_order(account, spec, session, matched=True, surface="xml")
    else:
        decision = desk.cancel_order(account, item.order_id, session)
    # appended now, in request order; a failed write fails the decision
    return (item, decision)


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


async def _query(desk: Desk, account: str, item: Query, session: Session) -> Answer:
    try:
        view = await desk.order(account, item.order_id, session)
    except FAILURES as exc:
        return Refused(item.attrs, str(exc))
    if view is None:
        return Refused(item.attrs, UNKNOWN_ORDER)
    return OrderStatus(item.order_id, view)
