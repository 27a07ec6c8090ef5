"""A day trader's own book of what the exchange told it (the chaos run's day-trading clients,
bench/chaos_daytrade.py): pure, no I/O, no clock (times are handed in).

The book follows docs/daytrading.md's rules from the answers alone: cash, held cash, holdings,
the pending BUY and SELL stacks, buy reserves and triggers, and the running totals the projection
keeps per account (cash added, paid to and received from the day-trading market, shares bought
and sold). A command whose outcome never came is settled against the account's DISPLAY_SUMMARY:
the summary must equal the book without it or with it (and, past 60 s, with old pending entries
expired); anything else is unexplained.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass, field

CASH_PER_DOLLAR = 1_000_000  # the ledger's cash units
EXPIRY_S = 55.0  # a pending entry may have expired this long after its command was sent (60 s
# of record time, which is never earlier than the send)
SYMBOLS = ("DTA", "DTB")
ADD_CENTS = 10_000_000  # 100,000.00 per ADD
LOW_CENTS = 500_000  # ADD again below 5,000.00 of cash
BUY_CENTS = 100_000  # BUY 1,000.00 (quotes stay under 950.00: docs/daytrading.md#quote-server)
RESERVE_CENTS = 50_000  # SET_BUY_AMOUNT 500.00
TRIGGER = "0.01"  # a buy trigger never reached (prices stay above 10 % of a base of >= 5.00)


def units(dollars: str) -> int:
    """'1234.5' -> cash units, exactly."""
    whole, _, frac = dollars.strip().partition(".")
    return int(whole) * CASH_PER_DOLLAR + int((frac + "000000")[:6])


def dollars(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@dataclass
class Pending:
    txn: int
    symbol: str
    shares: int
    amount: int  # cost (BUY) or proceeds (SELL), cash units
    sent: float  # when its command was sent (monotonic): the earliest it could expire from


@dataclass
class Answer:
    txn: int
    ok: bool
    command: str
    fields: list[str]  # after the command word; an error's: code, sentence

    @property
    def code(self) -> str:
        return "" if self.ok else self.fields[0]


def parse_answer(line: str) -> Answer:
    """`[N] OK,CMD,f…` / `[N] ERROR,CMD,code,sentence`; DISPLAY_SUMMARY's JSON stays whole."""
    head, _, rest = line.rstrip("\n").partition(" ")
    status, _, rest = rest.partition(",")
    command, _, rest = rest.partition(",")
    if status == "ERROR":
        fields = rest.split(",", 1)
    elif command == "DISPLAY_SUMMARY":
        fields = [rest]
    else:
        fields = rest.split(",") if rest else []
    return Answer(int(head.strip("[]")), status == "OK", command, fields)


@dataclass
class Book:
    cash: int = 0
    held: int = 0
    holdings: Counter = field(default_factory=Counter)
    buys: list[Pending] = field(default_factory=list)  # most recent last
    sells: list[Pending] = field(default_factory=list)
    reserves: dict[str, int] = field(default_factory=dict)
    triggers: set[str] = field(default_factory=set)
    added: int = 0
    paid: int = 0
    received: int = 0
    bought: Counter = field(default_factory=Counter)
    sold: Counter = field(default_factory=Counter)
    last_price: dict[str, int] = field(default_factory=dict)  # cents, from BUY answers

    def next_line(self, user: str, n: int, step: int) -> str:
        """The command to send next: finish what is pending, else the step's part of the cycle
        ADD when low; BUY, SELL, BUY, SELL, SET_BUY_AMOUNT (then its trigger, then cancel)."""
        if self.buys:
            return f"{'CANCEL' if step % 7 == 0 else 'COMMIT'}_BUY,{user}"
        if self.sells:
            return f"{'CANCEL' if step % 7 == 0 else 'COMMIT'}_SELL,{user}"
        for symbol in self.reserves:
            if symbol not in self.triggers:
                return f"SET_BUY_TRIGGER,{user},{symbol},{TRIGGER}"
            return f"CANCEL_SET_BUY,{user},{symbol}"
        if self.cash < LOW_CENTS * 10_000:
            return f"ADD,{user},{dollars(ADD_CENTS)}"
        symbol = SYMBOLS[(n + step // 5) % len(SYMBOLS)]
        phase = step % 5
        if phase == 4:
            return f"SET_BUY_AMOUNT,{user},{symbol},{dollars(RESERVE_CENTS)}"
        if phase % 2 and self.holdings[symbol] > 0:
            lots = max(1, self.holdings[symbol] // 2)
            price = self.last_price.get(symbol, 10_000)
            return f"SELL,{user},{symbol},{dollars(price * lots + price // 2)}"
        return f"BUY,{user},{symbol},{dollars(BUY_CENTS)}"

    def told(self, line: str, answer: Answer, sent: float) -> None:
        """An OK answer to `line`, as the exchange worded it."""
        command, f = answer.command, answer.fields
        if command == "ADD":
            amount = units(line.split(",")[2])
            self.cash += amount
            self.added += amount
        elif command in ("BUY", "SELL"):
            symbol, shares, price, amount = f[0], int(f[1]), units(f[2]) // 10_000, units(f[3])
            self.last_price[symbol] = price
            self._open(command, Pending(answer.txn, symbol, shares, amount, sent))
        elif command in ("COMMIT_BUY", "CANCEL_BUY", "COMMIT_SELL", "CANCEL_SELL"):
            stack = self.buys if command.endswith("BUY") else self.sells
            if stack:
                self._close(command, stack.pop())
        elif command == "SET_BUY_AMOUNT":
            self._reserve(f[0], units(f[1]))
        elif command == "SET_BUY_TRIGGER":
            self.triggers.add(f[0])
        elif command == "CANCEL_SET_BUY":
            self._reserve(f[0], 0)

    def _open(self, command: str, entry: Pending) -> None:
        if command == "BUY":
            self.cash -= entry.amount
            self.held += entry.amount
            self.buys.append(entry)
        else:
            self.holdings[entry.symbol] -= entry.shares
            self.sells.append(entry)

    def _close(self, command: str, entry: Pending) -> None:
        if command == "COMMIT_BUY":
            self.held -= entry.amount
            self.paid += entry.amount
            self.holdings[entry.symbol] += entry.shares
            self.bought[entry.symbol] += entry.shares
        elif command == "CANCEL_BUY":
            self.held -= entry.amount
            self.cash += entry.amount
        elif command == "COMMIT_SELL":
            self.cash += entry.amount
            self.received += entry.amount
            self.sold[entry.symbol] += entry.shares
        else:
            self.holdings[entry.symbol] += entry.shares

    def _reserve(self, symbol: str, amount: int) -> None:
        delta = amount - self.reserves.get(symbol, 0)
        self.cash -= delta
        self.held += delta
        if amount:
            self.reserves[symbol] = amount
        else:
            self.reserves.pop(symbol, None)
            self.triggers.discard(symbol)

    def expired(self, now: float) -> Book:
        """This book after a sweep at `now`: pending entries sent EXPIRY_S ago or more given
        back."""
        after = copy.deepcopy(self)
        for entry in [e for e in after.buys if now - e.sent >= EXPIRY_S]:
            after.buys.remove(entry)
            after._close("CANCEL_BUY", entry)
        for entry in [e for e in after.sells if now - e.sent >= EXPIRY_S]:
            after.sells.remove(entry)
            after._close("CANCEL_SELL", entry)
        return after

    def outcomes(self, line: str, txn: int, sent: float, summary: dict, now: float) -> list[Book]:
        """What the book may be at `now` if `line` (sent as `txn`) was decided or not: each with
        and without a sweep of what may have expired. A BUY or SELL was decided if the summary shows
        its txn pending (or it expired since, which leaves the book as without it)."""
        command = line.split(",", 1)[0]
        applied = copy.deepcopy(self)
        if command in ("BUY", "SELL"):
            key = "pending_buys" if command == "BUY" else "pending_sells"
            shown = [p for p in summary[key] if p["txn"] == txn]
            if shown:
                p = shown[0]
                amount = units(p["cost"] if command == "BUY" else p["proceeds"])
                applied._open(command, Pending(txn, p["symbol"], p["shares"], amount, sent))
        elif command != "DISPLAY_SUMMARY":
            fields = line.split(",")
            told = fields[2:4]  # the answer's symbol (and amount) where the command names them
            applied.told(line, Answer(txn, True, command, told), sent)
        return [self, applied, self.expired(now), applied.expired(now)]

    def shows(self, summary: dict) -> bool:
        """The summary (DISPLAY_SUMMARY's JSON) is this book's state."""
        return self.state() == state_of(summary)

    def state(self) -> tuple:
        return (
            self.cash,
            self.held,
            {s: n for s, n in self.holdings.items() if n},
            [(e.txn, e.amount) for e in reversed(self.buys)],
            [(e.txn, e.shares) for e in reversed(self.sells)],
            dict(self.reserves),
            set(self.triggers),
        )

    def resync(self, summary: dict, now: float) -> None:
        """Take the summary's state (after an unexplained one); the totals stay as told."""
        self.cash, self.held = units(summary["cash"]), units(summary["cash_held"])
        self.holdings = Counter(summary["holdings"])
        self.buys = [
            Pending(p["txn"], p["symbol"], p["shares"], units(p["cost"]), now)
            for p in reversed(summary["pending_buys"])
        ]
        self.sells = [
            Pending(p["txn"], p["symbol"], p["shares"], units(p["proceeds"]), now)
            for p in reversed(summary["pending_sells"])
        ]
        self.reserves = {b["symbol"]: units(b["amount"]) for b in summary["buy_settings"]}
        self.triggers = {b["symbol"] for b in summary["buy_settings"] if b["trigger"]}


def state_of(summary: dict) -> tuple:
    return (
        units(summary["cash"]),
        units(summary["cash_held"]),
        {s: n for s, n in summary["holdings"].items() if n},
        [(p["txn"], units(p["cost"])) for p in summary["pending_buys"]],
        [(p["txn"], p["shares"]) for p in summary["pending_sells"]],
        {b["symbol"]: units(b["amount"]) for b in summary["buy_settings"]},
        {b["symbol"] for b in summary["buy_settings"] if b["trigger"]},
    )


def summary_of(answer: Answer) -> dict:
    return json.loads(answer.fields[0])
