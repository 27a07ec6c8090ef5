"""``python -m services.clients -n N``: N random traders on the private channel around a mid
price, bounded by ``--orders`` per client or ``--duration`` seconds, reproducible by ``--seed``;
prints a summary (orders, fills, createOrder → NEW latency) as text and as one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from decimal import Decimal

from .traffic import Plan, summary, trade


def _plan(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m services.clients", description=__doc__)
    parser.add_argument("-n", "--clients", type=int, default=10)
    parser.add_argument("--orders", type=int, help="requests per client (default 100)")
    parser.add_argument("--duration", type=float, help="seconds to trade")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--host", default=os.environ.get("MARKETLOG_CHANNEL_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("MARKETLOG_PRIVATE_PORT", "7001"))
    )
    parser.add_argument("--symbol", help="default: the channel's default symbol")
    parser.add_argument("--mid", type=Decimal, default=Decimal("100"))
    parser.add_argument("--ticks", type=int, default=20, help="prices within mid ± ticks × 0.01")
    args = parser.parse_args(argv)
    orders = args.orders if args.orders is not None or args.duration else 100
    return Plan(
        clients=args.clients,
        orders=orders,
        duration=args.duration,
        seed=args.seed,
        host=args.host,
        port=args.port,
        symbol=args.symbol,
        mid=args.mid,
        ticks=args.ticks,
    )


def main(argv: list[str] | None = None) -> int:
    plan = _plan(argv)
    stats, elapsed = asyncio.run(trade(plan))
    result = summary(plan, stats, elapsed)
    lat = result["latency_ms"]
    print(
        f"{plan.clients} clients: {result['orders']} orders in {elapsed:.1f} s "
        f"({result['orders_per_second']} orders/s), {result['accepted']} accepted, "
        f"{result['refused']} refused, {result['fills']} fills, {result['canceled']} of "
        f"{result['cancels']} cancels done; createOrder → NEW p50 {lat['p50']} ms, "
        f"p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"
    )
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["refused"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
