"""WebSocket streams.

/ws/orders: the caller's own order decisions (accepted, filled, closed, reduced, rejected) as they
arrive on account.events. Authenticate with ``Authorization: Bearer <key>``, or, from a browser
(which cannot set that header), by offering the subprotocols ``marketlog`` and
``marketlog.key.<key>``: the stream accepts with ``marketlog``, so the key stays out of the URL
(and out of access logs); ``?api_key=<key>`` is still read. A refused handshake is closed with
4401/4403 before it is accepted.

/ws/market/{symbol}: public. First a snapshot of the L2 levels tagged with the sequence it
reflects, then ``level`` (new total at a price, "0" = gone) and ``trade`` messages each with its
sequence. If the tape jumps past the next sequence the stream sends a fresh snapshot.
"""

import asyncio
import contextlib
import logging
import re

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..bus import Event
from ..commands import ACCOUNT
from ..desk import Desk
from . import models as m
from .auth import bearer
from .dependencies import AuthDep, DeskDep
from .errors import ApiError

log = logging.getLogger(__name__)
router = APIRouter()
SYMBOL_RE = re.compile(m.SYMBOL)

QUEUE = 10_000  # events buffered for one slow subscriber before it is dropped
ORDER_EVENTS = {
    ACCOUNT + "OrderAccepted": "accepted",
    ACCOUNT + "OrderFilled": "filled",
    ACCOUNT + "OrderClosed": "closed",
    ACCOUNT + "OrderReduced": "reduced",
    ACCOUNT + "CommandRejected": "rejected",
}
ORDER_COMMANDS = {"PlaceOrder", "CancelOrder", "ReduceOrder", "ReplaceOrder"}


def order_message(event: Event) -> dict | None:
    """The private stream's message for a decision, None if it is not about orders."""
    kind = ORDER_EVENTS.get(event.name)
    if kind is None:
        return None
    if kind == "rejected" and event.record["command"].rsplit(".", 1)[-1] not in ORDER_COMMANDS:
        return None
    return {
        "type": kind,
        "command_id": event.record["envelope"]["command_id"],
        "ts": event.record["envelope"]["ts"],
        **m.decision_detail(event.record),
    }


class _Feed:
    """A bounded queue fed from the bus; overflow marks the subscriber as too slow."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE)
        self.overflow = False

    def __call__(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflow = True

    async def get(self) -> Event:
        if self.overflow:
            raise OverflowError("subscriber too slow; reconnect for a fresh snapshot")
        return await self.queue.get()


SUBPROTOCOL = "marketlog"
KEY_PROTOCOL = SUBPROTOCOL + ".key."


def offered_key(offered: list[str]) -> str | None:
    """The key a browser offered as a subprotocol (``marketlog.key.<key>``), if any."""
    keys = [p[len(KEY_PROTOCOL) :] for p in offered if p.startswith(KEY_PROTOCOL)]
    return keys[0] if keys and keys[0] else None


@router.websocket("/ws/orders")
async def orders(websocket: WebSocket, desk: DeskDep, auth: AuthDep) -> None:
    offered = websocket.scope.get("subprotocols") or []
    token = (
        bearer(websocket.headers.get("authorization"))
        or offered_key(offered)
        or websocket.query_params.get("api_key")
    )
    try:
        caller = await auth.account(token)
    except ApiError as exc:
        await websocket.close(code=4000 + exc.status, reason=exc.message)
        return
    feed = _Feed()
    with desk.decisions_about(caller.account or "", feed):
        # a browser that offered its key must get one of its offers back: the plain name
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        await _pump(websocket, feed, order_message)


@router.websocket("/ws/market/{symbol}")
async def market(websocket: WebSocket, symbol: str, desk: DeskDep) -> None:
    if not SYMBOL_RE.fullmatch(symbol) or not await desk.has_symbol(symbol):
        await websocket.close(code=4404, reason=f"unknown symbol {symbol[:40]}")
        return
    feed = _Feed()
    with desk.tape_of(symbol, feed):  # before the snapshot: miss nothing
        await websocket.accept()
        await _market(websocket, desk, symbol, feed)


async def _pump(websocket: WebSocket, feed: _Feed, render) -> None:
    receiver = asyncio.create_task(_until_closed(websocket))
    try:
        while not receiver.done():
            getter = asyncio.ensure_future(feed.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return
            message = render(getter.result())
            if message is not None:
                await websocket.send_json(message)
    except (WebSocketDisconnect, OverflowError, RuntimeError):
        pass
    finally:
        receiver.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive()


async def _market(websocket: WebSocket, desk: Desk, symbol: str, feed: _Feed) -> None:
    view = await desk.book_view(symbol)
    await websocket.send_json(view.snapshot())

    receiver = asyncio.create_task(_until_closed(websocket))
    try:
        while not receiver.done():
            getter = asyncio.ensure_future(feed.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return
            event = getter.result()
            if event.record["seq"] > view.seq + 1:  # a gap: start again from a newer snapshot
                view = await desk.book_view(symbol, event.record["seq"] - 1)
                await websocket.send_json(view.snapshot())
            for message in view.apply(event.name, event.record):
                await websocket.send_json(message)
    except (WebSocketDisconnect, OverflowError, RuntimeError):
        pass
    finally:
        receiver.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()
