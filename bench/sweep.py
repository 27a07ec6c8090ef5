"""The search for the highest sustained rate: a grid of offered rates, then a refinement.

A step is *sustained* when everything offered was answered within it, without errors, the
achieved rate is within 5 % of the offered one, p99 < 50 ms, and the last third's p99 is under
50 ms too (no growing backlog). The sweep climbs the grid until two steps fail or one reaches
less than 70 % of its rate, then halves the gap between the highest sustained rate and the
lowest failing one above it (the grid's steps are 33-50 % apart, too coarse for a headline).
Every step is measured once: what the host stole during it is in the step, for the reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

P99_LIMIT_MS = 50.0
# Low steps too: on a slow-moment VM p99 is 20-25 ms at 20-50 orders/s but over 50 ms at 100/s,
# and a sweep starting at 100 then reports 0 however close it came.
RATES = [25, 50, 100, 175, 250, 375, 500, 750, 1000, 1500, 2000, 3000, 4000, 8000, 12000, 20000]


@dataclass(frozen=True)
class Plan:
    rates: list[int] = field(default_factory=lambda: list(RATES))
    # 20 s: a step meets at most one stall of the VM, which alone failed 10 s steps
    step_seconds: float = 20.0
    # the broker's JIT needs a minute of transactions before its cost per commit settles; each
    # later surface needs only its own path warmed. Every order of a warm-up stays in the run's
    # state: resting ones make every engine snapshot longer (docs/performance.md)
    warm_up_seconds: float = 60.0
    rewarm_seconds: float = 10.0
    warm_up_rate: int = 300
    refine_steps: int = 2
    refine_resolution: float = 0.1
    settle_seconds: float = 2.0  # between steps: let queues drain

    def describe(self) -> dict:
        return asdict(self)


QUICK = Plan(
    rates=[25, 100],
    step_seconds=5.0,
    warm_up_seconds=5.0,
    rewarm_seconds=5.0,
    warm_up_rate=50,
    refine_steps=0,
)


def sustained(step: dict, p99_limit_ms: float = P99_LIMIT_MS) -> bool:
    """The rule above; a suite on a slower setup (bench/scale.py, three brokers) states its own
    p99 bound."""
    return (
        step["answered"] == step["sent"]
        and step["errors"] == 0
        and step["achieved_per_s"] >= 0.95 * step["offered_per_s"]
        and step["latency_ms"]["p99"] < p99_limit_ms
        and step["p99_last_third_ms"] < p99_limit_ms
    )


def best(steps: list[dict]) -> dict | None:
    ok = [s for s in steps if s["sustained"]]
    return max(ok, key=lambda s: s["offered_per_s"]) if ok else None


def refinement(steps: list[dict], resolution: float = 0.1) -> int | None:
    """Halfway between the highest sustained rate and the lowest failing one above it, while
    they are more than `resolution` apart; None without such a pair or once close enough."""
    top = best(steps)
    if top is None:
        return None
    low = top["offered_per_s"]
    above = [s["offered_per_s"] for s in steps if not s["sustained"] and s["offered_per_s"] > low]
    if not above or min(above) - low <= resolution * low:
        return None
    return round((low + min(above)) / 2)


async def sweep(measure_at: Callable[[int], Awaitable[dict]], plan: Plan) -> list[dict]:
    """Every step measured, in offered-rate order."""
    steps: list[dict] = []

    async def step_at(rate: int) -> dict:
        step = await measure_at(rate)
        steps.append(step)
        await asyncio.sleep(plan.settle_seconds)
        return step

    failures = 0
    for rate in plan.rates:
        step = await step_at(rate)
        failures = 0 if step["sustained"] else failures + 1
        if failures == 2 or step["achieved_per_s"] < 0.7 * rate:
            break
    for _ in range(plan.refine_steps):
        rate = refinement(steps, plan.refine_resolution)
        if rate is None:
            break
        await step_at(rate)
    return sorted(steps, key=lambda s: s["offered_per_s"])
