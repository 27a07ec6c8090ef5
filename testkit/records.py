"""Builders for ledger input records in their decoded Avro shape: (record name, fields).

For tests and benchmarks (``Pipeline.submit`` takes them); the gateway and the matcher write the
same records through services.common.codec.
"""

from __future__ import annotations

L = "marketlog.ledger."
Command = tuple[str, dict]


def envelope(command_id: str, key: str, ts: int, reply_to: str = "") -> dict:
    return {"command_id": command_id, "key": key, "ts": ts, "reply_to": reply_to}


def create_account(env: dict, balance: int, api_key_hash: str = "") -> Command:
    return L + "CreateAccount", {"envelope": env, "balance": balance, "api_key_hash": api_key_hash}


def deposit(env: dict, amount: int) -> Command:
    return L + "Deposit", {"envelope": env, "amount": amount}


def withdraw(env: dict, amount: int) -> Command:
    return L + "Withdraw", {"envelope": env, "amount": amount}


def create_symbol(env: dict, tick: int, lot: int) -> Command:
    return L + "CreateSymbol", {"envelope": env, "tick": tick, "lot": lot}


def issue_shares(env: dict, symbol: str, qty: int) -> Command:
    return L + "IssueShares", {"envelope": env, "symbol": symbol, "qty": qty}


def place_order(
    env: dict,
    symbol: str,
    side: str,
    qty: int,
    price: int | None,
    *,
    client_order_id: str = "",
    tif: str = "GTC",
    expire_ts: int | None = None,
    post_only: bool = False,
    stp: str = "NONE",
    budget: int | None = None,
) -> Command:
    return L + "PlaceOrder", {
        "envelope": env,
        "client_order_id": client_order_id,
        "symbol": symbol,
        "side": side,
        "price": price,
        "qty": qty,
        "tif": tif,
        "expire_ts": expire_ts,
        "post_only": post_only,
        "stp": stp,
        "budget": budget,
    }


def cancel_order(env: dict, order_id: int) -> Command:
    return L + "CancelOrder", {"envelope": env, "order_id": order_id}


def reduce_order(env: dict, order_id: int, qty: int) -> Command:
    return L + "ReduceOrder", {"envelope": env, "order_id": order_id, "qty": qty}


def replace_order(env: dict, order_id: int, price: int, qty: int) -> Command:
    return L + "ReplaceOrder", {"envelope": env, "order_id": order_id, "price": price, "qty": qty}


# -- settlements (written by the matcher, keyed by the order's account) --------------------------
def fill(
    env: dict,
    order_id: int,
    symbol: str,
    side: str,
    price: int,
    qty: int,
    remaining: int,
    seq: int,
    role: str,
) -> Command:
    return L + "Fill", {
        "envelope": env,
        "order_id": order_id,
        "symbol": symbol,
        "side": side,
        "price": price,
        "qty": qty,
        "remaining": remaining,
        "seq": seq,
        "role": role,
    }


def order_closed(
    env: dict, order_id: int, symbol: str, side: str, qty: int, reason: str, seq: int | None = None
) -> Command:
    return L + "OrderClosed", {
        "envelope": env,
        "order_id": order_id,
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "reason": reason,
        "seq": seq,
    }


def order_reduced(
    env: dict, order_id: int, symbol: str, side: str, qty: int, remaining: int, seq: int
) -> Command:
    return L + "OrderReduced", {
        "envelope": env,
        "order_id": order_id,
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "remaining": remaining,
        "seq": seq,
    }


def match_rejected(
    env: dict, order_id: int, symbol: str, reason: str, new_order_id: int | None = None
) -> Command:
    return L + "MatchRejected", {
        "envelope": env,
        "order_id": order_id,
        "symbol": symbol,
        "new_order_id": new_order_id,
        "reason": reason,
    }


def order_placed(
    env: dict,
    order_id: int,
    symbol: str,
    side: str,
    open_qty: int,
    seq: int | None,
    settlements: int,
) -> Command:
    return L + "OrderPlaced", {
        "envelope": env,
        "order_id": order_id,
        "symbol": symbol,
        "side": side,
        "open_qty": open_qty,
        "seq": seq,
        "settlements": settlements,
    }


# -- day trading (docs/daytrading.md): money in ledger units --------------------------------------
def quote(symbol: str, price: int, user: str = "", time_ms: int = 0, hit: bool = True) -> dict:
    """A marketlog.Quote (price in price units)."""
    return {
        "price": price,
        "symbol": symbol,
        "user": user,
        "quote_server_time": time_ms,
        "cryptokey": "k" * 40,
        "hit": hit,
    }


def day_trade(
    env: dict,
    command: str,
    *,
    txn: int = 1,
    symbol: str | None = None,
    amount: int | None = None,
    trigger: int | None = None,
    filename: str | None = None,
    quote: dict | None = None,
) -> Command:
    """A DayTrade; the user is the envelope's key ("" for the admin DUMPLOG)."""
    return L + "DayTrade", {
        "envelope": env,
        "command": command,
        "user": env["key"],
        "txn": txn,
        "symbol": symbol,
        "amount": amount,
        "trigger": trigger,
        "filename": filename,
        "quote": quote,
    }


def quote_tick(env: dict, quote: dict) -> Command:
    """A QuoteTick: env keyed by the quote's symbol (a gateway sends it to every partition)."""
    return L + "QuoteTick", {"envelope": env, "quote": quote}
