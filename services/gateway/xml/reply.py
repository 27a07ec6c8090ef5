"""Rendering the ``<results>`` document of protocols.md §1. Pure.

Amounts are written in the exchange's units (``format_qty``/``format_price``: no trailing zeros),
shares in ``<open>``/``<canceled>`` positive for both sides, times in epoch seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from services.common.money import format_price, format_qty

from .request import Attrs

if TYPE_CHECKING:  # only its shape: rendering reads no table
    from ..projection import OrderView

HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True)
class Open:
    shares: int  # quantity units


@dataclass(frozen=True)
class Canceled:
    shares: int
    time: int  # epoch seconds


@dataclass(frozen=True)
class Executed:
    shares: int
    price: int
    time: int


Entry = Open | Canceled | Executed


def seconds(ts_micros: int) -> int:
    return ts_micros // 1_000_000


_ATTR = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
_SPECIAL = re.compile(r'[&<>"\n\r\t]')


def _attr(value: str) -> str:
    return escape(value, _ATTR) if _SPECIAL.search(value) else value


def _element(tag: str, attrs: Attrs, body: str | None = None) -> str:
    text = "".join(f' {name}="{_attr(value)}"' for name, value in attrs)
    if body is None:
        return f"<{tag}{text}/>"
    return f"<{tag}{text}>{body}</{tag}>"


def created(account: str, symbol: str | None = None) -> str:
    attrs = (("sym", symbol), ("id", account)) if symbol is not None else (("id", account),)
    return _element("created", attrs)


def error(attrs: Attrs, message: str) -> str:
    return _element("error", attrs, escape(message))


def opened(attrs: Attrs, order_id: int) -> str:
    return _element("opened", (*attrs, ("id", str(order_id))))


def _entry(entry: Entry) -> str:
    if isinstance(entry, Open):
        return _element("open", (("shares", format_qty(entry.shares)),))
    if isinstance(entry, Canceled):
        return _element(
            "canceled", (("shares", format_qty(entry.shares)), ("time", str(entry.time)))
        )
    return _element(
        "executed",
        (
            ("shares", format_qty(entry.shares)),
            ("price", format_price(entry.price)),
            ("time", str(entry.time)),
        ),
    )


def _with_entries(tag: str, order_id: int, entries: list[Entry]) -> str:
    inner = "".join(f"\n    {_entry(e)}" for e in entries)
    return f'<{tag} id="{order_id}">{inner}\n  </{tag}>' if inner else f'<{tag} id="{order_id}"/>'


def status(order_id: int, entries: list[Entry]) -> str:
    return _with_entries("status", order_id, entries)


def canceled(order_id: int, entries: list[Entry]) -> str:
    return _with_entries("canceled", order_id, entries)


# -- answers: what the handler decided for each request child, rendered in one go ----------------
@dataclass(frozen=True)
class Created:
    account: str
    symbol: str | None = None  # shares of a symbol created for the account


@dataclass(frozen=True)
class Refused:
    attrs: Attrs  # the child's, echoed on the <error>
    message: str


@dataclass(frozen=True)
class Opened:
    attrs: Attrs  # the <order>'s sym, amount, limit
    order_id: int


@dataclass(frozen=True)
class OrderStatus:
    """A ``<query>``'s answer: at most one of open / canceled, then one executed per fill."""

    order_id: int
    view: OrderView


@dataclass(frozen=True)
class Cancellation:
    """A ``<cancel>``'s answer: the part it cancelled, then every earlier fill."""

    order_id: int
    shares: int  # quantity units cancelled
    ts: int  # the decision's time, microseconds
    view: OrderView | None


Answer = Created | Refused | Opened | OrderStatus | Cancellation


def document(answers: list[Answer]) -> bytes:
    """The reply to a request: one element per child, in request order."""
    return results([_render(answer) for answer in answers])


def _render(answer: Answer) -> str:
    match answer:
        case Created(account, symbol):
            return created(account, symbol)
        case Refused(attrs, message):
            return error(attrs, message)
        case Opened(attrs, order_id):
            return opened(attrs, order_id)
        case OrderStatus(order_id, view):
            return status(order_id, _status_entries(view))
        case Cancellation(order_id, shares, ts, view):
            return canceled(order_id, [Canceled(shares, seconds(ts)), *_executions(view)])
    raise TypeError(f"not an answer: {answer!r}")


def _status_entries(view: OrderView) -> list[Entry]:
    order = view.order
    entries: list[Entry] = []
    if order["open_qty"] > 0:
        entries.append(Open(order["open_qty"]))
    elif order["cancelled_qty"] > 0:
        ts = order["cancelled_ts"] or order["updated_ts"]
        entries.append(Canceled(order["cancelled_qty"], seconds(ts)))
    return entries + _executions(view)


def _executions(view: OrderView | None) -> list[Entry]:
    if view is None:
        return []
    return [Executed(e["qty"], e["price"], seconds(e["ts"])) for e in view.executions]


def results(children: list[str]) -> bytes:
    """The whole reply; always with an explicit ``</results>`` for clients that look for it."""
    inner = "".join(f"  {child}\n" for child in children)
    return (HEADER + f"<results>\n{inner}</results>\n").encode()


def document_error(message: str) -> bytes:
    """The reply to a request that could not be read at all."""
    return results([error((), message)])
