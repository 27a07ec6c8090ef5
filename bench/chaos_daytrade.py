"""The chaos run's day-trading clients (bench/chaos.py) and their books' check.

Each client is its own user on the line protocol (docs/daytrading.md#line-protocol): ADD, BUY
then COMMIT_BUY or CANCEL_BUY, SELL then COMMIT_SELL or CANCEL_SELL, SET_BUY_AMOUNT,
SET_BUY_TRIGGER and CANCEL_SET_BUY, one line at a time, each numbered ``[N]`` with the user's own
count. Its book (bench/daytrade_book.py) follows what it was told. A line whose answer never came
(connection lost, ``REQUEST_TIMEOUT_S``, or the gateway's ``timeout`` / ``unavailable``: the
command may still be decided) is ``unknown`` and never resent; after the gateway answers again
the client reads its account (DISPLAY_SUMMARY, decided after the unknown line: one user's lines
share a partition) and settles the line as decided or not. An error the book did not expect is
settled the same way.

At the end (``check``), per user, against the log and the projection: every line told OK has one
OK decision in ``account.events`` (else ``lost``); no line is decided twice and no user has more
decisions than lines sent (else ``duplicated``); the projection's cash, held cash, cash added,
paid and received and shares bought and sold equal the book (more than told: ``duplicated``;
less: ``lost``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.daytrade_book import Answer, Book, parse_answer, summary_of

REQUEST_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 180.0  # reading the account after an unknown line, at most
UNKNOWN_CODES = frozenset(("timeout", "unavailable"))  # the command may still be decided
REFUSALS = frozenset(("insufficient_funds", "insufficient_shares", "no_whole_share"))
FIRST_USER = "dt"
NO_ACCOUNT = {"cash": "0", "cash_held": "0", "holdings": {}, "pending_buys": []}
NO_ACCOUNT |= {"pending_sells": [], "buy_settings": []}


@dataclass
class DayTold:
    """What the day-trading clients sent and were told, per user."""

    sent: Counter = field(default_factory=Counter)  # lines, per user
    told_ok: set[tuple[str, int]] = field(default_factory=set)  # (user, txn) answered OK
    books: dict[str, Book] = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)  # error answers by code
    unknown: int = 0
    settled: Counter = field(default_factory=Counter)  # unknown lines: decided / not decided
    unexplained: list[str] = field(default_factory=list)  # summaries no outcome explains
    diverged: set[str] = field(default_factory=set)  # users with one: their totals are unknown
    unsettled: set[str] = field(default_factory=set)  # users whose account could not be read
    answers: list[tuple[float, float, bool]] = field(default_factory=list)  # sent, answered, ok


class DayTrader:
    surface = "daytrade"
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def __init__(self, port: int, user: str, n: int, told: DayTold) -> None:
        self.port, self.user, self.n, self.told = port, user, n, told
        self.book = told.books.setdefault(user, Book())
        self.txn = 0

    async def ask(self, line: str) -> Answer | None:
        """Send one line; its answer, or None if none came (the connection is then dropped)."""
        self.txn += 1
        self.told.sent[self.user] += 1
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                if self.conn is None:
                    self.conn = await asyncio.open_connection("127.0.0.1", self.port)
                self.conn[1].write(f"[{self.txn}] {line}\n".encode())
                answer = parse_answer((await self.conn[0].readuntil(b"\n")).decode())
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            answer = None
        if answer is None or answer.txn != self.txn or answer.code in UNKNOWN_CODES:
            self.close()
            return None
        return answer

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
        self.conn = None

    async def trade(self, going: Callable[[], bool], interval: float) -> None:
        step = 0
        while going():
            began = time.monotonic()
            line = self.book.next_line(self.user, self.n, step)
            answer = await self.ask(line)
            answered = time.monotonic()
            self.told.answers.append((began, answered, bool(answer and answer.ok)))
            if answer is None:
                self.told.unknown += 1
                await self.settle(line, self.txn, began, maybe_decided=True)
            elif answer.ok:
                self.told.told_ok.add((self.user, answer.txn))
                self.book.told(line, answer, began)
            else:
                self.told.errors[answer.code] += 1
                if answer.code not in REFUSALS:  # the book expected otherwise: read the account
                    await self.settle(line, answer.txn, began, maybe_decided=False)
            step += 1
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
        self.close()

    async def settle(self, line: str, txn: int, sent: float, maybe_decided: bool) -> None:
        """Read the account until the gateway answers; take the outcome of `line` it shows (one
        told an error was not decided, but something may have expired)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)  # the gateway may be down: do not spin
            answer = await self.ask(f"DISPLAY_SUMMARY,{self.user}")
            if answer is not None and (answer.ok or answer.code == "unknown_user"):
                break
        else:
            self.told.unsettled.add(self.user)
            return
        summary = summary_of(answer) if answer.ok else NO_ACCOUNT  # the first ADD not decided
        outcomes = self.book.outcomes(line, txn, sent, summary, time.monotonic())
        if not maybe_decided:
            outcomes = [outcomes[0], outcomes[0], outcomes[2], outcomes[2]]
        shown = [n for n, book in enumerate(outcomes) if book.shows(summary)]
        if not shown:
            self.told.unexplained.append(f"{self.user} [{txn}] {line}: {summary}")
            self.told.diverged.add(self.user)
            self.book.resync(summary, time.monotonic())
            return
        outcome = "decided" if shown[0] % 2 else "not decided" if maybe_decided else "an error"
        self.told.settled[outcome] += 1
        chosen = outcomes[shown[0]]
        self.book.__dict__.update(chosen.__dict__)


def users(count: int) -> list[str]:
    return [f"{FIRST_USER}{i}" for i in range(count)]


def check(told: DayTold, decisions: Counter, ok: set, projected: dict) -> dict:
    """The surface's figures. `decisions`: (user, txn) -> DayTradeDecided records in the log;
    `ok`: those decided OK; `projected`: user -> the projection's row (``projection_of``)."""
    lost = [f"{u}/{t}" for u, t in sorted(told.told_ok) if (u, t) not in ok]
    twice = [f"{u}/{t}" for (u, t), n in decisions.items() if n > 1 and u in told.sent]
    per_user = Counter(u for u, _ in decisions.elements())
    over = {u: per_user[u] - n for u, n in told.sent.items() if per_user[u] > n}
    more, less = [], []
    for user, book in told.books.items():
        if user in told.unsettled:
            continue
        row = projected.get(user, {})
        for name, want in expected(book, told_totals=user not in told.diverged).items():
            have = row.get(name, 0)
            if have > want:
                more.append(f"{user} {name} {have} > {want}")
            elif have < want:
                less.append(f"{user} {name} {have} < {want}")
    return {
        "requests": sum(told.sent.values()),
        "told_open": len(told.told_ok),  # lines answered OK
        "unknown": told.unknown,
        "refused": dict(told.errors.most_common(5)),
        "settled": dict(told.settled),
        "unexplained": told.unexplained[:20],
        "unsettled_users": sorted(told.unsettled),
        "lost": len(lost) + len(less) + len(told.unexplained),
        "lost_lines": lost[:20],
        "projection_less_than_told": less[:20],
        "duplicated": len(twice) + sum(over.values()) + len(more),
        "lines_decided_twice": twice[:20],
        "users_with_more_decisions_than_lines": over,
        "projection_more_than_told": more[:20],
    }


def expected(book: Book, told_totals: bool) -> dict[str, int]:
    """What the projection must show for this book (the running totals only while every
    unknown line was explained)."""
    found = {"available": book.cash, "held": book.held, "daytrade_held": book.held}
    if told_totals:
        found |= {"daytrade_added": book.added, "daytrade_paid": book.paid}
        found |= {"daytrade_received": book.received}
        for symbol in book.bought.keys() | book.sold.keys():
            found |= {f"bought {symbol}": book.bought[symbol], f"sold {symbol}": book.sold[symbol]}
    return found


PROJECTION_SQL = (
    "SELECT account_id, available, held, daytrade_held, daytrade_added, daytrade_paid,"
    " daytrade_received FROM balances WHERE account_id LIKE %s"
)
SHARES_SQL = "SELECT account_id, symbol, bought, sold FROM daytrade_shares"


def projection_of(conn) -> dict[str, dict[str, int]]:
    """The projection's figures per day-trading user (the chaos run's users only)."""
    found: dict[str, dict[str, int]] = {}
    names = ("available", "held", "daytrade_held", "daytrade_added", "daytrade_paid")
    for account, *values in conn.execute(PROJECTION_SQL, (f"{FIRST_USER}%",)):
        found[account] = dict(zip((*names, "daytrade_received"), values, strict=True))
    for account, symbol, bought, sold in conn.execute(SHARES_SQL):
        row = found.setdefault(account, {})
        row |= {f"bought {symbol}": bought, f"sold {symbol}": sold}
    return found
