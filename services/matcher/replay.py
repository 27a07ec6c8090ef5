"""`python -m services.matcher replay [FILE]`: the pure core over JSON lines of commands.

The format is in docs/matcher.md. A bad line gets `line N: why` on stderr and is skipped; the
exit status is 1 if any line was skipped, else 0.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from services.common.money import AmountError, format_price, format_qty, parse_cash, parse_price
from services.common.money import parse_qty as _parse_qty

from .state import (
    BUY,
    CANCELLED,
    REDUCED,
    REJECTED,
    RESTED,
    SELL,
    STPS,
    TIFS,
    TRADE,
    Matcher,
)

SHORT_STP = {  # Coinbase's flags, accepted as well
    "dc": "DECREMENT_AND_CANCEL",
    "co": "CANCEL_OLDEST",
    "cn": "CANCEL_NEWEST",
    "cb": "CANCEL_BOTH",
}


class BadLine(ValueError):
    """A line that is not a command; the message says why."""


def _field(obj: dict, name: str, default: Any = ..., *, kind: type | tuple = object) -> Any:
    value = obj.get(name, default)
    if value is ...:
        raise BadLine(f"missing {name!r}")
    if value is not None and value is not default and not isinstance(value, kind):
        raise BadLine(f"{name!r} must be {getattr(kind, '__name__', kind)}")
    if isinstance(value, bool) and kind is int:
        raise BadLine(f"{name!r} must be an integer")
    return value


def _amount(obj: dict, name: str, parse, default: Any = ...) -> int | None:
    value = _field(obj, name, default, kind=(str, int))
    if value is None or value is default:
        return value
    if isinstance(value, bool):
        raise BadLine(f"{name!r} must be a decimal string")
    try:
        return parse(str(value))
    except AmountError as exc:
        raise BadLine(str(exc)) from exc


def _qty(text: str) -> int:
    return _parse_qty(text)


def _enum(obj: dict, name: str, allowed, default: str, aliases: dict | None = None) -> str:
    value = _field(obj, name, default, kind=str)
    value = (aliases or {}).get(value.lower(), value.upper())
    if value not in allowed:
        raise BadLine(f"{name!r} must be one of {', '.join(sorted(allowed))}")
    return value


def parse_command(line: str) -> tuple[str, str, tuple]:
    """(op, symbol, args for the Book method) from one JSON line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not JSON: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise BadLine("not a JSON object")
    op = _field(obj, "op", kind=str)
    symbol = _field(obj, "symbol", kind=str)
    ts = _field(obj, "ts", 0, kind=int)
    oid = _field(obj, "id", kind=int)
    account = _field(obj, "account", None, kind=str)
    if op == "place":
        if account is None:
            raise BadLine("missing 'account'")
        side = _enum(obj, "side", (BUY, SELL), ...)
        args = (
            ts,
            oid,
            account,
            side,
            _amount(obj, "price", parse_price, None),
            _amount(obj, "qty", _qty),
            _enum(obj, "tif", TIFS, "GTC"),
            _field(obj, "expire_ts", None, kind=int),
            _field(obj, "post_only", False, kind=bool),
            _enum(obj, "stp", STPS, "NONE", SHORT_STP),
            _amount(obj, "budget", parse_cash, None),
            _amount(obj, "lot", _qty, 1),
        )
    elif op == "cancel":
        args = (ts, oid, account)
    elif op == "reduce":
        args = (ts, oid, account, _amount(obj, "qty", _qty))
    elif op == "replace":
        new_id = _field(obj, "new_id", kind=int)
        price, qty = _amount(obj, "price", parse_price), _amount(obj, "qty", _qty)
        args = (ts, oid, account, new_id, price, qty)
    else:
        raise BadLine(f"unknown op {op!r} (place, cancel, reduce, replace)")
    return op, symbol, args


def _price(units: int | None) -> str | None:
    return None if units is None else format_price(units, 2)


def event_json(symbol: str, e: tuple) -> dict:
    """One core event as the replay's JSON object (accounts included: this is a private view)."""
    kind = e[0]
    if kind == TRADE:
        _, seq, ts, price, qty, maker, maker_acct, taker, taker_acct, side, maker_rem, taker_rem = e
        return {
            "event": kind,
            "symbol": symbol,
            "seq": seq,
            "ts": ts,
            "price": _price(price),
            "qty": format_qty(qty),
            "maker": maker,
            "taker": taker,
            "maker_account": maker_acct,
            "taker_account": taker_acct,
            "taker_side": side.lower(),
            "maker_remaining": format_qty(maker_rem),
            "taker_remaining": format_qty(taker_rem),
        }
    if kind == REJECTED:
        _, _, ts, oid, account, side, qty, new_oid, reason = e
        out = {"event": kind, "symbol": symbol, "ts": ts, "id": oid, "account": account}
        if new_oid is not None:
            out["new_id"] = new_oid
        if qty is not None:  # a refused placement
            out["side"], out["qty"] = side.lower(), format_qty(qty)
        out["reason"] = reason
        return out
    _, seq, ts, oid, account, side, price = e[:7]
    out = {
        "event": kind,
        "symbol": symbol,
        "seq": seq,
        "ts": ts,
        "id": oid,
        "account": account,
        "side": side.lower(),
        "price": _price(price),
    }
    if kind == RESTED:
        out["qty"] = format_qty(e[7])
    elif kind == CANCELLED:
        out["qty"], out["reason"], out["rested"] = format_qty(e[7]), e[8], e[9]
    elif kind == REDUCED:
        out["qty"], out["remaining"], out["rested"] = format_qty(e[7]), format_qty(e[8]), e[9]
    return out


def replay(lines: Iterable[str], out: IO[str], err: IO[str]) -> int:
    """Run every command line through one Matcher; returns the number of bad lines."""
    matcher = Matcher()
    bad = 0
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            op, symbol, args = parse_command(text)
        except BadLine as exc:
            print(f"line {number}: {exc}", file=err)
            bad += 1
            continue
        events = getattr(matcher.book(symbol), op)(*args)
        for e in events:
            out.write(json.dumps(event_json(symbol, e), separators=(",", ":")))
            out.write("\n")
    return bad


def _lines(path: str | None) -> Iterator[str]:
    if path is None or path == "-":
        yield from sys.stdin
        return
    with open(path, encoding="utf-8") as f:
        yield from f


def main(path: str | None) -> int:
    try:
        bad = replay(_lines(path), sys.stdout, sys.stderr)
    except OSError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    return 1 if bad else 0
