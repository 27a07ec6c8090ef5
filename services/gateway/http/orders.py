"""An account's orders (the account's key): place, list, read, cancel, reduce, replace, and its
executions. An account never sees or touches another's orders: another account's order id is
404, exactly like an unknown one, and nothing is appended."""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from services.common.money import format_qty

from .. import commands as cmd
from ..bus import Event
from ..desk import Desk
from ..projection import OrderView
from . import models as m
from .auth import Caller
from .dependencies import Account, DeskDep
from .errors import ApiError, granted, listed

router = APIRouter(tags=["orders"])
OrderId = Annotated[int, Path(ge=1, le=m.MAX_ID)]


@router.post("/orders", status_code=201, response_model=m.Decision)
async def place(
    body: m.NewOrder,
    caller: Account,
    desk: DeskDep,
    wait: Annotated[Literal["accepted", "matched"], Query()] = "accepted",
) -> m.Decision:
    """Place an order. By default (wait=accepted) the answer is the ledger's decision
    (OrderAccepted: its cash or shares are held and it went to the book). With wait=matched
    the answer comes once the order has been matched and every settlement it caused is
    decided: an OrderPlaced with the order's status, open quantity and the fills of that
    match (or the OrderAccepted if the matcher is not heard in time). A repeated
    client_order_id gets the original acceptance."""
    spec = m.order_spec(body, desk.now())
    await listed(desk, spec.symbol)
    decision = desk.place_order(
        caller.account or "", spec, caller.session, matched=wait == "matched", surface="http"
    )
    event = granted(await decision)
    return _placement(event) or _decision(event)


@router.get("/orders", response_model=list[m.OrderOut])
async def list_orders(
    caller: Account,
    desk: DeskDep,
    status: Annotated[Literal["open", "cancelled", "executed"] | None, Query()] = None,
    symbol: Annotated[str | None, Query(pattern=m.SYMBOL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, le=m.MAX_ID)] = None,
) -> list[m.OrderOut]:
    """The caller's orders, newest first (page with before=<order_id>)."""
    rows = await desk.orders(caller.account or "", caller.session, status, symbol, limit, before)
    return [m.order_out(r) for r in rows]


@router.get("/orders/{order_id}", response_model=m.OrderDetail)
async def get_order(order_id: OrderId, caller: Account, desk: DeskDep) -> m.OrderDetail:
    view = await _own_order(desk, caller, order_id)
    return m.OrderDetail(
        **m.order_out(view.order).model_dump(),
        executions=[m.execution_out(e, view.order) for e in view.executions],
    )


@router.delete("/orders/{order_id}", response_model=m.Decision)
async def cancel(order_id: OrderId, caller: Account, desk: DeskDep) -> m.Decision:
    await _own_order(desk, caller, order_id)
    decision = desk.cancel_order(caller.account or "", order_id, caller.session)
    return _decision(granted(await decision))


@router.post("/orders/{order_id}/reduce", response_model=m.Decision)
async def reduce(order_id: OrderId, body: m.Reduce, caller: Account, desk: DeskDep) -> m.Decision:
    """Take qty off the order's open quantity; it keeps its place in the queue."""
    qty = m.qty(body.qty)
    await _own_order(desk, caller, order_id)
    decision = desk.reduce_order(caller.account or "", order_id, qty, caller.session)
    return _decision(granted(await decision))


@router.post("/orders/{order_id}/replace", response_model=m.Decision)
async def replace(order_id: OrderId, body: m.Replace, caller: Account, desk: DeskDep) -> m.Decision:
    """Replace the order with a new price and open quantity (a new order id, a new place)."""
    price, qty = m.price(body.price), m.qty(body.qty)
    await _own_order(desk, caller, order_id)
    decision = desk.replace_order(caller.account or "", order_id, price, qty, caller.session)
    closed = granted(await decision)
    accepted = [e for e in closed.related if e.name == cmd.ACCEPTED]
    return _decision(accepted[-1] if accepted else closed)


@router.get("/executions", response_model=list[m.Execution])
async def executions(
    caller: Account,
    desk: DeskDep,
    symbol: Annotated[str | None, Query(pattern=m.SYMBOL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[m.Execution]:
    """The caller's fills, newest first."""
    rows = await desk.executions(caller.account or "", caller.session, symbol, limit)
    return [m.execution_out(r) for r in rows]


async def _own_order(desk: Desk, caller: Caller, order_id: int) -> OrderView:
    """The caller's order, read after its own writes; 404 for another account's."""
    view = await desk.order(caller.account or "", order_id, caller.session)
    if view is None:
        raise ApiError(404, f"no order {order_id}")
    return view


def _placement(event: Event) -> m.Decision | None:
    """An order's answer after its match: its OrderPlaced, with the order's fills of that match."""
    order_id = event.record.get("order_id")
    placed = [e for e in event.related if e.name == cmd.PLACED and e.record["order_id"] == order_id]
    if not placed or event.name != cmd.ACCEPTED:
        return None
    fills = [
        e.record
        for e in event.related
        if e.name == cmd.FILLED and e.key == event.key and e.record["order_id"] == order_id
    ]
    answer = _decision(placed[0])
    executed = sum(f["qty"] for f in fills)
    status = "open" if placed[0].record["open_qty"] else ("executed" if executed else "cancelled")
    answer.detail["status"] = status
    answer.detail["executed_qty"] = format_qty(executed)
    answer.detail["fills"] = [m.decision_detail(f) for f in fills]
    return answer


def _decision(event: Event) -> m.Decision:
    record = event.record
    return m.Decision(
        command_id=record["envelope"]["command_id"],
        event=event.name.rsplit(".", 1)[-1],
        order_id=record.get("order_id"),
        duplicate=bool(record.get("duplicate")),
        detail=m.decision_detail(record),
    )
