"""Random traders on the private channel: each places limit orders around a mid price (half of
them crossing the spread) and cancels some of its live ones, one request at a time, waiting for
the answer (NEW, CANCELED or an error). The stream of requests of trader i is drawn from
``Random(f"{seed}:{i}")``, so a seed replays the same requests (fills depend on timing)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.common.json_lines import JsonLines


@dataclass(frozen=True)
class Plan:
    clients: int
    orders: int | None  # per client; None: until the duration ends
    duration: float | None
    seed: int
    host: str
    port: int
    symbol: str | None
    mid: Decimal
    ticks: int  # prices within mid ± ticks × tick
    tick: Decimal = Decimal("0.01")
    cancel_share: float = 0.25
    max_qty: int = 10


@dataclass
class Stats:
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    fills: int = 0
    cancels: int = 0
    canceled: int = 0
    latencies: list[float] = field(default_factory=list)  # createOrder -> NEW, seconds

    def add(self, other: Stats) -> None:
        for name in ("sent", "accepted", "refused", "fills", "cancels", "canceled"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies


def request(plan: Plan, rng: random.Random, n: int, live: list[int]) -> dict[str, Any]:
    """The trader's next request: a cancel of one of its live orders, or a new limit order."""
    if live and rng.random() < plan.cancel_share:
        return {"message": "cancelOrder", "orderId": live[rng.randrange(len(live))]}
    price = plan.mid + rng.randint(-plan.ticks, plan.ticks) * plan.tick
    message = {
        "message": "createOrder",
        "orderId": n,
        "side": rng.choice(("BUY", "SELL")),
        "price": float(price),
        "quantity": rng.randint(1, plan.max_qty),
    }
    if plan.symbol:
        message["symbol"] = plan.symbol
    return message


class Trader:
    def __init__(self, plan: Plan, index: int) -> None:
        self.plan = plan
        self.rng = random.Random(f"{plan.seed}:{index}")
        self.stats = Stats()
        self.live: list[int] = []
        self.waiting: dict[int, asyncio.Future] = {}

    async def run(self, deadline: float | None) -> None:
        lines = await JsonLines.connect(self.plan.host, self.plan.port)
        reader = asyncio.ensure_future(self._read(lines))
        try:
            n = 0
            while self.plan.orders is None or n < self.plan.orders:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                n += 1
                await self._one(lines, request(self.plan, self.rng, n, self.live))
        finally:
            reader.cancel()
            await lines.close()

    async def _one(self, lines: JsonLines, message: dict[str, Any]) -> None:
        oid = message["orderId"]
        answer = self.waiting[oid] = asyncio.get_running_loop().create_future()
        began = time.perf_counter()
        lines.send(message)
        create = message["message"] == "createOrder"
        self.stats.sent += create
        self.stats.cancels += not create
        try:
            async with asyncio.timeout(30):
                kind = await answer
        except TimeoutError:
            kind = "timeout"
        finally:
            self.waiting.pop(oid, None)
        if kind == "NEW":
            self.stats.latencies.append(time.perf_counter() - began)
        elif create:
            self.stats.refused += 1

    async def _read(self, lines: JsonLines) -> None:
        while (m := await lines.recv()) is not None:
            oid = m.get("orderId")
            kind = m.get("report") or m.get("message")
            if kind == "NEW":
                self.stats.accepted += 1
                self.live.append(oid)
            elif kind == "FILL":
                self.stats.fills += 1
                if not Decimal(str(m.get("remaining", 1))):
                    self._gone(oid)
            elif kind == "CANCELED":
                self.stats.canceled += 1
                self._gone(oid)
            waiter = self.waiting.get(oid)
            if waiter is not None and not waiter.done() and kind in ("NEW", "CANCELED", "error"):
                waiter.set_result(kind)

    def _gone(self, oid: int) -> None:
        if oid in self.live:
            self.live.remove(oid)


async def trade(plan: Plan) -> tuple[Stats, float]:
    """Run every trader; (their stats together, seconds taken)."""
    began = time.monotonic()
    deadline = None if plan.duration is None else began + plan.duration
    traders = [Trader(plan, i) for i in range(plan.clients)]
    await asyncio.gather(*(t.run(deadline) for t in traders))
    total = Stats()
    for t in traders:
        total.add(t.stats)
    return total, time.monotonic() - began


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(plan: Plan, stats: Stats, elapsed: float) -> dict[str, Any]:
    ms = [v * 1000 for v in stats.latencies]
    return {
        "clients": plan.clients,
        "seed": plan.seed,
        "orders": stats.sent,
        "accepted": stats.accepted,
        "refused": stats.refused,
        "fills": stats.fills,
        "cancels": stats.cancels,
        "canceled": stats.canceled,
        "seconds": round(elapsed, 3),
        "orders_per_second": round(stats.sent / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {
            "p50": round(percentile(ms, 0.50), 1),
            "p90": round(percentile(ms, 0.90), 1),
            "p99": round(percentile(ms, 0.99), 1),
            "max": round(max(ms, default=0.0), 1),
        },
    }
