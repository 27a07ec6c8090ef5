"""Ledger state to bytes and back: canonical JSON, so equal states give equal bytes and hashes.

Everything is sorted by key, so the bytes depend on the state only, never on the order in which
dictionaries were filled. ``state_hash`` is the SHA-256 of those bytes.
"""

from __future__ import annotations

import hashlib
import json

from .accounts import Account, Order, Position
from .decisions import AcceptedTerms
from .state import Ledger
from .trading import BuySetting, Pending, SellSetting, Trader

VERSION = 2  # 2: day trading (traders, cash paid to and received from the market)
READABLE = (1, 2)  # a version-1 snapshot is a ledger without day trading


class SnapshotError(ValueError):
    """Bytes that are not a ledger snapshot this code can restore, or one for other partitions."""


def dump(ledger: Ledger) -> bytes:
    doc = {
        "version": VERSION,
        "partition": ledger.partition,
        "partitions": ledger.partitions,
        "placed": ledger.placed,
        "cash_supply": ledger.cash_supply,
        "share_supply": sorted(ledger.share_supply.items()),
        "symbols": sorted([s, tick, lot] for s, (tick, lot) in ledger.symbols.items()),
        "accounts": [_account(ledger.accounts[k]) for k in sorted(ledger.accounts)],
        "orders": [_order(ledger.orders[k]) for k in sorted(ledger.orders)],
        "forwarded": sorted(ledger.forwarded.items()),
        "paid_to_market": ledger.paid_to_market,
        "received_from_market": ledger.received_from_market,
        "market_shares": sorted(ledger.market_shares.items()),
        # an empty trader is no trader: the bytes depend on what the state holds only
        "traders": [_trader(k, t) for k, t in sorted(ledger.traders.items()) if not t.empty()],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _account(acct: Account) -> list:
    positions = [[s, p.available, p.held] for s, p in sorted(acct.positions.items())]
    seen = [[k, v] for k, v in sorted(acct.client_orders.items())]
    return [acct.id, acct.cash, acct.held, positions, seen]


def _order(o: Order) -> list:
    return [o.id, o.account.id, o.symbol, o.buy, o.price, o.remaining, o.hold, *o.terms]


def _trader(account_id: str, t: Trader) -> list:
    return [
        account_id,
        sorted(t.holdings.items()),
        [_pending(e) for e in t.buys],  # oldest first, as the stack is kept
        [_pending(e) for e in t.sells],
        [[s, b.reserve, b.trigger, b.txn] for s, b in sorted(t.buy_settings.items())],
        [[s, b.amount, b.trigger, b.reserved, b.txn] for s, b in sorted(t.sell_settings.items())],
    ]


def _pending(e: Pending) -> list:
    return [e.symbol, e.shares, e.price, e.ts, e.txn]


def _load_trader(doc: list) -> tuple[str, Trader]:
    account_id, holdings, buys, sells, buy_settings, sell_settings = doc
    t = Trader()
    t.holdings = dict(holdings)
    t.buys = [Pending(*e) for e in buys]
    t.sells = [Pending(*e) for e in sells]
    t.buy_settings = {s: BuySetting(*rest) for s, *rest in buy_settings}
    t.sell_settings = {s: SellSetting(*rest) for s, *rest in sell_settings}
    return account_id, t


def load(data: bytes, partition: int, partitions: int) -> Ledger:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise SnapshotError(f"not a ledger snapshot: {exc}") from exc
    if doc.get("version") not in READABLE:
        raise SnapshotError(f"snapshot version {doc.get('version')}, expected one of {READABLE}")
    if (doc["partition"], doc["partitions"]) != (partition, partitions):
        # order ids are n x P + p + 1: a different P would hand out ids already used
        raise SnapshotError(
            f"snapshot of partition {doc['partition']}/{doc['partitions']}, "
            f"restoring {partition}/{partitions}"
        )
    ledger = Ledger(partition, partitions)
    ledger.placed, ledger.cash_supply = doc["placed"], doc["cash_supply"]
    ledger.share_supply = dict(doc["share_supply"])
    ledger.symbols = {s: (tick, lot) for s, tick, lot in doc["symbols"]}
    for account_id, cash, held, positions, seen in doc["accounts"]:
        acct = ledger.accounts[account_id] = Account(account_id, cash)
        acct.held = held
        acct.positions = {s: Position(a, h) for s, a, h in positions}
        acct.client_orders = {k: v if type(v) is str else AcceptedTerms(*v) for k, v in seen}
    for order_id, account_id, symbol, buy, price, remaining, hold, *terms in doc["orders"]:
        acct = ledger.accounts[account_id]
        order = Order(order_id, acct, symbol, buy, price, remaining, hold, tuple(terms))
        ledger.orders[order_id] = order
    ledger.forwarded = dict(doc["forwarded"])
    ledger.paid_to_market = doc.get("paid_to_market", 0)
    ledger.received_from_market = doc.get("received_from_market", 0)
    ledger.market_shares = dict(doc.get("market_shares", []))
    ledger.traders = dict(_load_trader(t) for t in doc.get("traders", []))
    return ledger


def state_hash(ledger: Ledger) -> str:
    return hashlib.sha256(dump(ledger)).hexdigest()
