"""Parsing and validating one XML request (protocols.md §1) into plain values. Pure.

A document that cannot be a request at all (malformed, a DTD or entity, an unknown root) raises
RequestError and is answered with a single ``<error>``. A child that is wrong on its own becomes a
``Rejected`` item in its place, so every other child is still answered in request order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from services.common.money import AmountError, parse_cash, parse_price, parse_qty

ACCOUNT_RE = re.compile(r"[0-9]{1,32}")
SYMBOL_RE = re.compile(r"[A-Za-z0-9]{1,32}")
ORDER_ID_RE = re.compile(r"[0-9]{1,18}")

Attrs = tuple[tuple[str, str], ...]


class RequestError(ValueError):
    """The document as a whole is not a request; the message is for the client."""


@dataclass(frozen=True)
class Rejected:
    """A child refused before anything was appended: echo ``attrs`` on the ``<error>``."""

    attrs: Attrs
    message: str


@dataclass(frozen=True)
class NewAccount:
    account: str
    balance: int  # cash units


@dataclass(frozen=True)
class AddShares:
    symbol: str
    account: str
    qty: int  # quantity units


@dataclass(frozen=True)
class Order:
    symbol: str
    qty: int  # quantity units, negative = sell
    price: int  # price units
    attrs: Attrs  # sym, amount, limit as the client wrote them


@dataclass(frozen=True)
class Query:
    order_id: int

    @property
    def attrs(self) -> Attrs:
        return (("id", str(self.order_id)),)


@dataclass(frozen=True)
class Cancel:
    order_id: int

    @property
    def attrs(self) -> Attrs:
        return (("id", str(self.order_id)),)


CreateItem = NewAccount | AddShares | Rejected
TransactionItem = Order | Query | Cancel | Rejected


@dataclass(frozen=True)
class CreateRequest:
    items: tuple[CreateItem, ...]


@dataclass(frozen=True)
class TransactionsRequest:
    account: str | None  # None: missing or invalid; every item is then Rejected
    items: tuple[TransactionItem, ...]


Request = CreateRequest | TransactionsRequest


def parse_request(body: bytes, max_elements: int = 1000) -> Request:
    root = _parse_xml(body)
    count = sum(1 for _ in root.iter())
    if count > max_elements:
        raise RequestError(f"request has {count} elements, more than the limit of {max_elements}")
    if root.tag == "create":
        return CreateRequest(tuple(_create_items(root)))
    if root.tag == "transactions":
        return _transactions(root)
    raise RequestError(f"unknown request <{_tag(root)}>: expected <create> or <transactions>")


class _Forbidden(Exception):
    """A DTD, an entity declaration or an external reference: refused as soon as expat meets it."""


def _forbid(what: str):
    def refuse(*_) -> None:
        raise _Forbidden(what)

    return refuse


_REFUSE_DTD = _forbid("DTDForbidden")
_REFUSE_ENTITY = _forbid("EntitiesForbidden")
_REFUSE_EXTERNAL = _forbid("ExternalReferenceForbidden")


def _parse_xml(body: bytes) -> Element:
    """The document's element tree, as ElementTree builds it (namespaced names as ``{uri}tag``,
    comments and processing instructions dropped), refusing what defusedxml's ``forbid_dtd``
    refuses: any DTD (so no entity can be declared), entity declarations, external references.
    expat directly with the C TreeBuilder: defusedxml's pure-Python parser took twice as long."""
    builder = TreeBuilder()
    parser = expat.ParserCreate(None, "}")
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _REFUSE_DTD
    parser.EntityDeclHandler = _REFUSE_ENTITY
    parser.UnparsedEntityDeclHandler = _REFUSE_ENTITY
    parser.ExternalEntityRefHandler = _REFUSE_EXTERNAL
    start = builder.start

    def start_element(tag: str, attrib: dict[str, str]) -> None:
        if "}" in tag:
            tag = "{" + tag
        if attrib and any("}" in name for name in attrib):
            attrib = {("{" + k if "}" in k else k): v for k, v in attrib.items()}
        start(tag, attrib)

    parser.StartElementHandler = start_element
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
    except _Forbidden as exc:
        raise RequestError(f"forbidden XML: {exc} (no DTDs or entities)") from None
    except expat.ExpatError as exc:
        raise RequestError(f"malformed XML: {exc}") from None
    except (ValueError, LookupError) as exc:  # e.g. an unknown encoding in the declaration
        raise RequestError(f"unreadable XML: {exc}") from exc
    return builder.close()


def _tag(element: Element) -> str:
    return str(element.tag)[:40]


def _attrs(element: Element, *names: str) -> Attrs:
    return tuple((n, element.attrib[n]) for n in names if n in element.attrib)


# -- <create> ------------------------------------------------------------------------------------
def _create_items(root: Element) -> list[CreateItem]:
    items: list[CreateItem] = []
    for child in root:
        if child.tag == "account":
            items.append(_new_account(child))
        elif child.tag == "symbol":
            items.extend(_symbol(child))
        else:
            items.append(Rejected((), f"unexpected <{_tag(child)}> in <create>"))
    return items


def _new_account(element: Element) -> CreateItem:
    attrs = _attrs(element, "id")
    account = element.get("id")
    if account is None or not ACCOUNT_RE.fullmatch(account):
        return Rejected(attrs, "account id must be 1 to 32 digits")
    balance = element.get("balance")
    if balance is None:
        return Rejected(attrs, "account needs a balance")
    try:
        return NewAccount(account, parse_cash(balance))
    except AmountError as exc:
        return Rejected(attrs, f"balance: {exc}")


def _symbol(element: Element) -> list[CreateItem]:
    symbol = element.get("sym")
    children = list(element)
    if not children:
        return [Rejected(_attrs(element, "sym"), "<symbol> has no <account> children")]
    items: list[CreateItem] = []
    for child in children:
        attrs = (("sym", symbol),) if symbol is not None else ()
        attrs += _attrs(child, "id")
        if child.tag != "account":
            items.append(Rejected(attrs, f"unexpected <{_tag(child)}> in <symbol>"))
        elif symbol is None or not SYMBOL_RE.fullmatch(symbol):
            items.append(Rejected(attrs, "symbol must be 1 to 32 letters or digits"))
        elif not ACCOUNT_RE.fullmatch(child.get("id") or ""):
            items.append(Rejected(attrs, "account id must be 1 to 32 digits"))
        else:
            items.append(_shares(symbol, child, attrs))
    return items


def _shares(symbol: str, child: Element, attrs: Attrs) -> CreateItem:
    try:
        return AddShares(symbol, child.get("id", ""), parse_qty((child.text or "").strip()))
    except AmountError as exc:
        return Rejected(attrs, f"shares: {exc}")


# -- <transactions> ------------------------------------------------------------------------------
def _transactions(root: Element) -> TransactionsRequest:
    by_id, by_account = root.get("id"), root.get("account")
    account = by_id if by_id is not None else by_account
    problem = None
    if by_id is not None and by_account is not None and by_id != by_account:
        problem = "transactions has both id= and account=, and they differ"
    elif account is None:
        problem = "transactions needs id=ACCOUNT"
    elif not ACCOUNT_RE.fullmatch(account):
        problem = "account id must be 1 to 32 digits"
    items = [_transaction_item(child) for child in root]
    if problem is not None:
        return TransactionsRequest(
            None, tuple(Rejected(_echo(i, c), problem) for i, c in zip(items, root, strict=True))
        )
    return TransactionsRequest(account, tuple(items))


def _echo(item: TransactionItem, child: Element) -> Attrs:
    if isinstance(item, Rejected):
        return item.attrs
    if isinstance(item, Order):
        return item.attrs
    return _attrs(child, "id")


def _transaction_item(child: Element) -> TransactionItem:
    if child.tag == "order":
        return _order(child)
    if child.tag in ("query", "cancel"):
        attrs = _attrs(child, "id")
        order_id = child.get("id")
        if order_id is None or not ORDER_ID_RE.fullmatch(order_id) or int(order_id) == 0:
            return Rejected(attrs, f"{child.tag} needs id= a positive order id")
        return (Query if child.tag == "query" else Cancel)(int(order_id))
    return Rejected(_attrs(child, "id"), f"unexpected <{_tag(child)}> in <transactions>")


def _order(child: Element) -> TransactionItem:
    attrs = _attrs(child, "sym", "amount", "limit")
    symbol, amount, limit = child.get("sym"), child.get("amount"), child.get("limit")
    if symbol is None or not SYMBOL_RE.fullmatch(symbol):
        return Rejected(attrs, "order needs sym= 1 to 32 letters or digits")
    if amount is None or limit is None:
        return Rejected(attrs, "order needs amount= and limit=")
    try:
        qty = parse_qty(amount, signed=True)
    except AmountError as exc:
        return Rejected(attrs, str(exc))
    try:
        price = parse_price(limit)
    except AmountError as exc:
        return Rejected(attrs, f"limit: {exc}")
    return Order(symbol, qty, price, attrs)
