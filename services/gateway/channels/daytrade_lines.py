"""The day-trading line protocol's framing and answers (docs/daytrading.md, *Line protocol*). Pure.

- ``LineReader`` cuts a byte stream into request lines: LF ends a line, a CR before it is dropped;
  a line over ``MAX_LINE`` bytes is reported once (``TOO_LONG``) as soon as it passes the limit,
  and the rest of it, up to its LF, is dropped.
- ``ok``/``error`` render one answer line; ``decision_answer`` renders a DayTradeDecided; money is
  dollars with two decimals (more only if an amount is not whole cents, which exchange trading
  can leave in an account's cash); ``summary_json`` renders DISPLAY_SUMMARY's canonical JSON (ledger
  units) in dollars.
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.common.workload import MAX_LINE

from ..commands import CENT_CASH, CENT_PRICE

TOO_LONG = None  # what LineReader yields for a line over the limit
UNKNOWN = "?"  # the command word of an answer to a line without a recognisable one
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class LineReader:
    """Request lines out of a byte stream, each without its LF (and CR), or TOO_LONG."""

    def __init__(self, max_len: int = MAX_LINE) -> None:
        self.max_len = max_len
        self.buffer = bytearray()
        self.skipping = False  # inside a line already reported TOO_LONG

    def feed(self, data: bytes) -> list[bytes | None]:
        lines: list[bytes | None] = []
        self.buffer += data
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(self.buffer[start:end])
            start = end + 1
            if self.skipping:
                self.skipping = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            lines.append(TOO_LONG if len(line) > self.max_len else line)
        del self.buffer[:start]
        # a line without its LF yet: too long once it cannot fit (its CR included)
        if len(self.buffer) > self.max_len + 1:
            if not self.skipping:
                lines.append(TOO_LONG)
                self.skipping = True
            self.buffer.clear()
        return lines

    @property
    def pending(self) -> bool:
        """Part of a line has arrived."""
        return bool(self.buffer) or self.skipping


# -- answers -------------------------------------------------------------------------------
def dollars(units: int, per_cent: int) -> str:
    """An amount of ledger units as dollars: two decimals, more only if it is not whole cents."""
    sign = "-" if units < 0 else ""
    cents, rest = divmod(abs(units), per_cent)
    whole, frac = divmod(cents, 100)
    text = f"{sign}{whole}.{frac:02d}"
    if rest:
        digits = len(str(per_cent)) - 1
        text += f"{rest:0{digits}d}".rstrip("0")
    return text


def cash(units: int | None) -> str:
    return "" if units is None else dollars(units, CENT_CASH)


def price(units: int | None) -> str:
    return "" if units is None else dollars(units, CENT_PRICE)


def _clean(text: str) -> str:
    return _UNPRINTABLE.sub("?", text)


def ok(txn: int, command: str, *fields: Any) -> bytes:
    return _clean(",".join((f"[{txn}] OK", command, *map(str, fields)))).encode("ascii") + b"\n"


def error(txn: int | None, command: str | None, code: str, sentence: str) -> bytes:
    head = f"[{txn or 0}] ERROR,{command or UNKNOWN},{code},"
    return _clean(head + " ".join(sentence.split())).encode("ascii") + b"\n"


def _n(value: int | None) -> str:
    return "" if value is None else str(value)


def decision_answer(record: dict[str, Any]) -> bytes:
    """The answer line of a DayTradeDecided (DUMPLOG's OK line is made by the server, which
    knows the file)."""
    txn, command = record["txn"], record["command"]
    if not record["ok"]:
        return error(txn, command, record.get("code") or "refused", record.get("message") or "")
    symbol = record.get("symbol") or ""
    shares, funds, trigger = record.get("shares"), record.get("funds"), record.get("price")
    if command == "ADD":
        return ok(txn, command, cash(record["cash"]))
    if command == "QUOTE":
        quote = record.get("quote") or {}
        return ok(
            txn,
            command,
            quote.get("symbol", symbol),
            price(quote.get("price")),
            _n(quote.get("quote_server_time")),
            quote.get("cryptokey", ""),
        )
    if command in ("BUY", "COMMIT_BUY", "CANCEL_BUY", "SELL", "COMMIT_SELL", "CANCEL_SELL"):
        return ok(txn, command, symbol, _n(shares), price(trigger), cash(funds))
    if command in ("SET_BUY_AMOUNT", "CANCEL_SET_BUY"):
        return ok(txn, command, symbol, cash(funds))
    if command == "SET_BUY_TRIGGER":
        return ok(txn, command, symbol, price(trigger), cash(funds))
    if command == "SET_SELL_AMOUNT":
        return ok(txn, command, symbol, cash(funds), _n(shares or 0))
    if command == "SET_SELL_TRIGGER":
        return ok(txn, command, symbol, price(trigger), _n(shares))
    if command == "CANCEL_SET_SELL":
        return ok(txn, command, symbol, _n(shares))
    if command == "DISPLAY_SUMMARY":
        return ok(txn, command, summary_json(record.get("summary") or "{}"))
    return ok(txn, command)


# the summary's amounts, by key: cash units or price units (everything else as it is)
SUMMARY_CASH = frozenset(("cash", "cash_held", "cost", "proceeds", "amount"))
SUMMARY_PRICE = frozenset(("price", "trigger"))


def _in_dollars(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "expires_ts" and isinstance(v, int):  # record time, µs: shown as Unix ms
                out["expires_ms"] = v // 1000
            else:
                out[k] = _in_dollars(v, k)
        return out
    if isinstance(value, list):
        return [_in_dollars(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        if key in SUMMARY_CASH:
            return cash(value)
        if key in SUMMARY_PRICE:
            return price(value)
    return value


def summary_json(canonical: str) -> str:
    """DISPLAY_SUMMARY's JSON in dollars, from the ledger's canonical JSON in ledger units (key
    order kept, no spaces)."""
    return json.dumps(_in_dollars(json.loads(canonical)), separators=(",", ":"))
