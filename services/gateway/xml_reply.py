"""Rendering the ``<results>`` document of protocols.md §1. Pure.

Amounts are written in the exchange's units (``format_qty``/``format_price``: no trailing zeros),
shares in ``<open>``/``<canceled>`` positive for both sides, times in epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from services.common.money import format_price, format_qty

from .xml_request import Attrs

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


def _element(tag: str, attrs: Attrs, body: str | None = None) -> str:
    text = "".join(f' {name}="{escape(value, _ATTR)}"' for name, value in attrs)
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


def results(children: list[str]) -> bytes:
    """The whole reply; always with an explicit ``</results>`` for clients that look for it."""
    inner = "".join(f"  {child}\n" for child in children)
    return (HEADER + f"<results>\n{inner}</results>\n").encode()


def document_error(message: str) -> bytes:
    """The reply to a request that could not be read at all."""
    return results([error((), message)])
