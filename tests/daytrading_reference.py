"""An independent reference model of the day-trading rules (docs/daytrading.md).

Written from docs/daytrading.md and the workspace's protocol notes (§2), sharing no code with
``services/``: it has its own line parser, its own arithmetic (cents and whole shares, plain
ints) and its own state. Tests feed it the same input as the real system — the commands, the
record time of each (µs), the price the system used for each QUOTE/BUY/SELL and the quote ticks
— and compare outcomes and final states.

Usage::

    events = [(time_us, item), ...]   # item: Cmd, BadLine (refused by the gateway) or Tick
    result = run(events, quote)       # quote(symbol, user, time_us) -> price in cents
    result.outcomes                   # one Outcome per Cmd/BadLine, in order
    result.model.state()              # {user: {...}} final state (see Model.state)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

WINDOW_US = 60_000_000  # a pending BUY/SELL lives 60 s of record time
MAX_PENDING = 100  # live pending BUYs (and, separately, SELLs) per user
LINE_LIMIT = 1024

# command -> the kinds of its arguments after the userid
SIGNATURES: dict[str, tuple[str, ...]] = {
    "ADD": ("money",),
    "QUOTE": ("stock",),
    "BUY": ("stock", "money"),
    "COMMIT_BUY": (),
    "CANCEL_BUY": (),
    "SELL": ("stock", "money"),
    "COMMIT_SELL": (),
    "CANCEL_SELL": (),
    "SET_BUY_AMOUNT": ("stock", "money"),
    "CANCEL_SET_BUY": ("stock",),
    "SET_BUY_TRIGGER": ("stock", "money"),
    "SET_SELL_AMOUNT": ("stock", "money"),
    "SET_SELL_TRIGGER": ("stock", "money"),
    "CANCEL_SET_SELL": ("stock",),
    "DISPLAY_SUMMARY": (),
    "DUMPLOG": ("file",),
}
NEEDS_QUOTE = {"QUOTE", "BUY", "SELL"}


# -- input ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cmd:
    """A command that passed the gateway's syntax checks. ``money`` is cents (the amount, or
    the trigger price of SET_*_TRIGGER); ``user`` is None only for the admin DUMPLOG."""

    txn: int | None
    name: str
    user: str | None
    stock: str | None = None
    money: int | None = None
    file: str | None = None


@dataclass(frozen=True)
class BadLine:
    """A line the gateway refuses (``bad_input``): it is answered, nothing else happens."""

    txn: int | None
    text: str
    why: str


@dataclass(frozen=True)
class Tick:
    """A quote tick: fires the armed triggers on ``stock`` that ``price`` (cents) meets."""

    stock: str
    price: int


class _Refused(Exception):
    pass


def _money(text: str) -> int:
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise _Refused(f"not an amount: {text!r}")
    whole, _, decimals = text.partition(".")
    decimals = decimals.rstrip("0")
    if len(decimals) > 2:
        raise _Refused(f"too many decimals: {text!r}")
    if len(whole.lstrip("0")) > 10:
        raise _Refused(f"too large: {text!r}")
    cents = int(whole) * 100 + int((decimals + "00")[:2])
    if cents <= 0:
        raise _Refused("amount must be positive")
    return cents


def _stock(text: str) -> str:
    if not (1 <= len(text) <= 3 and all("A" <= c <= "Z" for c in text)):
        raise _Refused(f"not a symbol: {text!r}")
    return text


def _userid(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", text):
        raise _Refused(f"not a userid: {text!r}")
    return text


def _file(text: str) -> str:
    parts = text.split("/")
    base = parts[-1]
    if (
        not text
        or text[0] == "/"
        or "\\" in text
        or re.search(r"(^|/)[.]{2}(/|$)", text)
        or not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}", base)
    ):
        raise _Refused(f"not a file name: {text!r}")
    return text


def parse_line(line: str) -> Cmd | BadLine:
    """One line of the workload format; a BadLine for anything the gateway must refuse."""
    text = line.rstrip("\r\n\t ")
    txn = None
    try:
        if len(text) > LINE_LIMIT or not re.fullmatch(r"[ -~]*", text):
            raise _Refused("not a printable line within the limit")
        text = text.lstrip(" \t")
        found = re.match(r"\[\s*(\d+)\s*\][ \t]*", text)
        if found:
            if not 1 <= int(found.group(1)) < 2**63:
                raise _Refused("transaction number out of range")
            txn = int(found.group(1))
            text = text[found.end() :]
        elif text.startswith("["):
            raise _Refused("bad transaction number prefix")
        parts = [part.strip(" \t") for part in text.split(",")]
        name, rest = parts[0], parts[1:]
        if name not in SIGNATURES:
            raise _Refused(f"unknown command {name!r}")
        if name == "DUMPLOG" and len(rest) == 1:
            return Cmd(txn, name, None, file=_file(rest[0]))
        kinds = SIGNATURES[name]
        if len(rest) != 1 + len(kinds):
            raise _Refused(f"{name} needs {1 + len(kinds)} fields, got {len(rest)}")
        user = _userid(rest[0])
        values: dict[str, object] = {}
        for kind, raw in zip(kinds, rest[1:], strict=True):
            values[kind] = {"money": _money, "stock": _stock, "file": _file}[kind](raw)
        return Cmd(txn, name, user, values.get("stock"), values.get("money"), values.get("file"))
    except _Refused as why:
        return BadLine(txn, line.rstrip("\r\n"), str(why))


def parse_text(text: str) -> list[Cmd | BadLine]:
    return [parse_line(line) for line in text.splitlines() if line.strip()]


# -- state ---------------------------------------------------------------------------------
@dataclass
class Pending:
    stock: str
    shares: int
    price: int
    value: int  # cost of a BUY / proceeds of a SELL = shares * price
    time: int
    txn: int | None


@dataclass
class BuyPlan:
    reserve: int
    trigger: int | None = None
    txn: int | None = None  # of the SET_BUY_TRIGGER that set the trigger


@dataclass
class SellPlan:
    amount: int
    trigger: int | None = None
    reserved: int = 0
    txn: int | None = None


@dataclass
class Trader:
    cash: int = 0
    held: int = 0
    shares: dict[str, int] = field(default_factory=dict)
    buys: list[Pending] = field(default_factory=list)  # oldest first; the last is the newest
    sells: list[Pending] = field(default_factory=list)
    buy_plans: dict[str, BuyPlan] = field(default_factory=dict)
    sell_plans: dict[str, SellPlan] = field(default_factory=dict)

    def owned(self, stock: str) -> int:
        return self.shares.get(stock, 0)

    def add_shares(self, stock: str, count: int) -> None:
        left = self.shares.get(stock, 0) + count
        assert left >= 0, (stock, left)
        if left:
            self.shares[stock] = left
        else:
            self.shares.pop(stock, None)


@dataclass(frozen=True)
class Outcome:
    """One command's decision: ``ok`` with ``detail`` (the line protocol's OK fields, money in
    cents), or an error ``code``."""

    txn: int | None
    command: str
    user: str | None
    ok: bool
    code: str | None = None
    detail: tuple = ()


@dataclass(frozen=True)
class Movement:
    """One change of a user's available cash, as the audit log's accountTransaction."""

    txn: int | None
    user: str
    action: str  # "add" | "remove"
    cents: int


@dataclass(frozen=True)
class Execution:
    """One trigger execution (the audit log's systemEvent)."""

    txn: int | None
    user: str
    side: str  # "buy" | "sell"
    stock: str
    shares: int
    price: int
    value: int  # cost of the shares bought / proceeds of the shares sold


class _Error(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Model:
    """The whole system's day-trading state, one command or tick at a time."""

    def __init__(self, quote: Callable[[str, str | None, int], int]) -> None:
        self.quote = quote
        self.traders: dict[str, Trader] = {}
        self.movements: list[Movement] = []
        self.executions: list[Execution] = []
        # flows for the conservation check
        self.deposited = 0
        self.paid = 0  # cash paid to the day-trading market
        self.received = 0
        self.bought: dict[str, int] = {}
        self.sold: dict[str, int] = {}

    # -- helpers ---------------------------------------------------------------------------
    def _move(self, txn: int | None, user: str, cents: int) -> None:
        if cents > 0:
            self.movements.append(Movement(txn, user, "add", cents))
        elif cents < 0:
            self.movements.append(Movement(txn, user, "remove", -cents))

    def expire(self, user: str, now: int) -> None:
        """Release every pending BUY/SELL of ``user`` that is 60 s old or more at ``now``."""
        trader = self.traders[user]
        keep = []
        for entry in trader.buys:
            if now - entry.time >= WINDOW_US:
                trader.held -= entry.value
                trader.cash += entry.value
                self._move(entry.txn, user, entry.value)
            else:
                keep.append(entry)
        trader.buys = keep
        keep = []
        for entry in trader.sells:
            if now - entry.time >= WINDOW_US:
                trader.add_shares(entry.stock, entry.shares)
            else:
                keep.append(entry)
        trader.sells = keep

    def expire_all(self, now: int) -> None:
        for user in self.traders:
            self.expire(user, now)

    # -- commands --------------------------------------------------------------------------
    def apply(self, item: Cmd | BadLine, now: int) -> Outcome:
        if isinstance(item, BadLine):
            return Outcome(item.txn, "?", None, False, "bad_input")
        cmd = item
        try:
            detail = self._decide(cmd, now)
        except _Error as error:
            return Outcome(cmd.txn, cmd.name, cmd.user, False, error.code)
        return Outcome(cmd.txn, cmd.name, cmd.user, True, None, detail)

    def _decide(self, cmd: Cmd, now: int) -> tuple:
        name, user = cmd.name, cmd.user
        if name == "DUMPLOG" and user is None:
            return (cmd.file,)
        assert user is not None
        if name == "ADD":
            self.traders.setdefault(user, Trader())
        if user not in self.traders:
            if name == "QUOTE":
                return (cmd.stock, self.quote(cmd.stock, user, now))
            raise _Error("unknown_user")
        self.expire(user, now)
        trader = self.traders[user]
        handler = getattr(self, "_" + name.lower())
        return handler(cmd, trader, now)

    def _add(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        t.cash += cmd.money
        self.deposited += cmd.money
        self._move(cmd.txn, cmd.user, cmd.money)
        return (t.cash,)

    def _quote(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        return (cmd.stock, self.quote(cmd.stock, cmd.user, now))

    def _buy(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        price = self.quote(cmd.stock, cmd.user, now)
        assert price > 0
        count = cmd.money // price
        if count == 0:
            raise _Error("no_whole_share")
        cost = count * price
        if cost > t.cash:
            raise _Error("insufficient_funds")
        if len(t.buys) >= MAX_PENDING:
            raise _Error("too_many_pending")
        t.cash -= cost
        t.held += cost
        t.buys.append(Pending(cmd.stock, count, price, cost, now, cmd.txn))
        self._move(cmd.txn, cmd.user, -cost)
        return (cmd.stock, count, price, cost)

    def _commit_buy(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        if not t.buys:
            raise _Error("no_pending_buy")
        entry = t.buys.pop()
        t.held -= entry.value
        t.add_shares(entry.stock, entry.shares)
        self.paid += entry.value
        self.bought[entry.stock] = self.bought.get(entry.stock, 0) + entry.shares
        return (entry.stock, entry.shares, entry.price, entry.value)

    def _cancel_buy(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        if not t.buys:
            raise _Error("no_pending_buy")
        entry = t.buys.pop()
        t.held -= entry.value
        t.cash += entry.value
        self._move(cmd.txn, cmd.user, entry.value)
        return (entry.stock, entry.shares, entry.price, entry.value)

    def _sell(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        price = self.quote(cmd.stock, cmd.user, now)
        assert price > 0
        count = cmd.money // price
        if count == 0:
            raise _Error("no_whole_share")
        if count > t.owned(cmd.stock):
            raise _Error("insufficient_shares")
        if len(t.sells) >= MAX_PENDING:
            raise _Error("too_many_pending")
        t.add_shares(cmd.stock, -count)
        t.sells.append(Pending(cmd.stock, count, price, count * price, now, cmd.txn))
        return (cmd.stock, count, price, count * price)

    def _commit_sell(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        if not t.sells:
            raise _Error("no_pending_sell")
        entry = t.sells.pop()
        t.cash += entry.value
        self.received += entry.value
        self.sold[entry.stock] = self.sold.get(entry.stock, 0) + entry.shares
        self._move(cmd.txn, cmd.user, entry.value)
        return (entry.stock, entry.shares, entry.price, entry.value)

    def _cancel_sell(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        if not t.sells:
            raise _Error("no_pending_sell")
        entry = t.sells.pop()
        t.add_shares(entry.stock, entry.shares)
        return (entry.stock, entry.shares, entry.price, entry.value)

    def _set_buy_amount(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        plan = t.buy_plans.get(cmd.stock)
        reserve = plan.reserve if plan else 0
        if plan and plan.trigger is not None and cmd.money // plan.trigger == 0:
            raise _Error("no_whole_share")
        delta = cmd.money - reserve
        if delta > t.cash:
            raise _Error("insufficient_funds")
        t.cash -= delta
        t.held += delta
        if plan:
            plan.reserve = cmd.money
        else:
            t.buy_plans[cmd.stock] = BuyPlan(cmd.money)
        self._move(cmd.txn, cmd.user, -delta)
        return (cmd.stock, cmd.money)

    def _set_buy_trigger(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        plan = t.buy_plans.get(cmd.stock)
        if plan is None:
            raise _Error("no_buy_amount")
        if plan.reserve // cmd.money == 0:
            raise _Error("no_whole_share")
        plan.trigger = cmd.money
        plan.txn = cmd.txn
        return (cmd.stock, cmd.money, plan.reserve)

    def _cancel_set_buy(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        plan = t.buy_plans.pop(cmd.stock, None)
        if plan is None:
            raise _Error("no_buy_amount")
        t.held -= plan.reserve
        t.cash += plan.reserve
        self._move(cmd.txn, cmd.user, plan.reserve)
        return (cmd.stock, plan.reserve)

    def _set_sell_amount(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        plan = t.sell_plans.get(cmd.stock)
        if plan and plan.trigger is not None:
            wanted = cmd.money // plan.trigger
            if wanted == 0:
                raise _Error("no_whole_share")
            if wanted - plan.reserved > t.owned(cmd.stock):
                raise _Error("insufficient_shares")
            t.add_shares(cmd.stock, plan.reserved - wanted)
            plan.reserved = wanted
        if plan:
            plan.amount = cmd.money
        else:
            plan = t.sell_plans[cmd.stock] = SellPlan(cmd.money)
        return (cmd.stock, cmd.money, plan.reserved)

    def _set_sell_trigger(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        plan = t.sell_plans.get(cmd.stock)
        if plan is None:
            raise _Error("no_sell_amount")
        wanted = plan.amount // cmd.money
        if wanted == 0:
            raise _Error("no_whole_share")
        if wanted - plan.reserved > t.owned(cmd.stock):
            raise _Error("insufficient_shares")
        t.add_shares(cmd.stock, plan.reserved - wanted)
        plan.reserved = wanted
        plan.trigger = cmd.money
        plan.txn = cmd.txn
        return (cmd.stock, cmd.money, wanted)

    def _cancel_set_sell(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        plan = t.sell_plans.pop(cmd.stock, None)
        if plan is None:
            raise _Error("no_sell_amount")
        t.add_shares(cmd.stock, plan.reserved)
        return (cmd.stock, plan.reserved)

    def _display_summary(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        return (self.user_state(cmd.user),)

    def _dumplog(self, cmd: Cmd, t: Trader, now: int) -> tuple:
        return (cmd.file,)

    # -- triggers --------------------------------------------------------------------------
    def tick(self, tick: Tick, now: int) -> list[Execution]:
        done = []
        for user in sorted(self.traders):
            trader = self.traders[user]
            buy = trader.buy_plans.get(tick.stock)
            sell = trader.sell_plans.get(tick.stock)
            buy_met = buy is not None and buy.trigger is not None and tick.price <= buy.trigger
            sell_met = sell is not None and sell.trigger is not None and tick.price >= sell.trigger
            if not (buy_met or sell_met):
                continue
            self.expire(user, now)
            if buy_met:
                count = buy.reserve // tick.price
                assert count >= 1
                cost = count * tick.price
                del trader.buy_plans[tick.stock]
                trader.held -= buy.reserve
                trader.cash += buy.reserve - cost
                trader.add_shares(tick.stock, count)
                self.paid += cost
                self.bought[tick.stock] = self.bought.get(tick.stock, 0) + count
                done.append(Execution(buy.txn, user, "buy", tick.stock, count, tick.price, cost))
                self._move(buy.txn, user, buy.reserve - cost)
            if sell_met:
                proceeds = sell.reserved * tick.price
                del trader.sell_plans[tick.stock]
                trader.cash += proceeds
                self.received += proceeds
                self.sold[tick.stock] = self.sold.get(tick.stock, 0) + sell.reserved
                done.append(
                    Execution(
                        sell.txn, user, "sell", tick.stock, sell.reserved, tick.price, proceeds
                    )
                )
                self._move(sell.txn, user, proceeds)
        self.executions += done
        return done

    # -- reading ---------------------------------------------------------------------------
    def user_state(self, user: str) -> dict:
        """Plain data: cash and held cash (cents), holdings, pending entries (newest first),
        buy reserves and triggers, sell amounts, reserved shares and triggers."""
        t = self.traders[user]

        def pending(entries: list[Pending]) -> list[tuple]:
            return [(e.stock, e.shares, e.price, e.value, e.time, e.txn) for e in reversed(entries)]

        return {
            "cash": t.cash,
            "held": t.held,
            "holdings": dict(sorted(t.shares.items())),
            "pending_buys": pending(t.buys),
            "pending_sells": pending(t.sells),
            "buy_reserves": {s: p.reserve for s, p in sorted(t.buy_plans.items())},
            "buy_triggers": {
                s: p.trigger for s, p in sorted(t.buy_plans.items()) if p.trigger is not None
            },
            "sell_amounts": {s: p.amount for s, p in sorted(t.sell_plans.items())},
            "sell_reserved": {s: p.reserved for s, p in sorted(t.sell_plans.items())},
            "sell_triggers": {
                s: p.trigger for s, p in sorted(t.sell_plans.items()) if p.trigger is not None
            },
        }

    def state(self) -> dict[str, dict]:
        return {user: self.user_state(user) for user in sorted(self.traders)}

    def check(self) -> None:
        """The invariants: nothing negative, held cash = pending BUYs + reserves, and cash and
        shares conserved against the flows in and out of the day-trading market."""
        cash = 0
        shares: dict[str, int] = {}
        for user, t in self.traders.items():
            assert t.cash >= 0 and t.held >= 0, user
            assert t.held == sum(e.value for e in t.buys) + sum(
                p.reserve for p in t.buy_plans.values()
            ), user
            assert len(t.buys) <= MAX_PENDING and len(t.sells) <= MAX_PENDING, user
            for p in t.buy_plans.values():
                assert p.reserve > 0 and (p.trigger is None or p.reserve // p.trigger >= 1)
            for p in t.sell_plans.values():
                assert (p.trigger is None and p.reserved == 0) or (
                    p.trigger is not None and p.reserved == p.amount // p.trigger >= 1
                )
            cash += t.cash + t.held
            for stock, count in t.shares.items():
                assert count > 0
                shares[stock] = shares.get(stock, 0) + count
            for e in t.sells:
                shares[e.stock] = shares.get(e.stock, 0) + e.shares
            for stock, p in t.sell_plans.items():
                shares[stock] = shares.get(stock, 0) + p.reserved
        assert cash == self.deposited - self.paid + self.received
        flows = {
            s: self.bought.get(s, 0) - self.sold.get(s, 0) for s in set(self.bought) | set(shares)
        }
        assert {s: n for s, n in flows.items() if n} == {s: n for s, n in shares.items() if n}
        net = sum(m.cents if m.action == "add" else -m.cents for m in self.movements)
        assert net == sum(t.cash for t in self.traders.values())


# -- running a whole input -----------------------------------------------------------------
@dataclass
class Result:
    model: Model
    outcomes: list[Outcome]


def run(
    events: Iterable[tuple[int, Cmd | BadLine | Tick]],
    quote: Callable[[str, str | None, int], int],
) -> Result:
    """Apply ``(record_time_us, item)`` events in order."""
    model = Model(quote)
    outcomes = []
    for now, item in events:
        if isinstance(item, Tick):
            model.tick(item, now)
        else:
            outcomes.append(model.apply(item, now))
    return Result(model, outcomes)


def hashed_quote(seed: str = "reference") -> Callable[[str, str | None, int], int]:
    """A deterministic stand-in for the quote server: a price in 1.00 … 500.00 from
    (seed, symbol, the record time's whole second), the same for every user."""

    def quote(stock: str, user: str | None, now: int) -> int:
        digest = hashlib.blake2b(f"{seed}|{stock}|{now // 1_000_000}".encode(), digest_size=8)
        return 100 + int.from_bytes(digest.digest(), "big") % 49_901

    return quote
