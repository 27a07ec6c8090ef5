"""The gateway's account tail per decision: always decoded (before issue 19's lazy decoding)
against decoded only when needed (services/gateway/hearing.py).

    python -m bench.tail [--orders 20000] [--repeat 5]

The decisions are the real ones: the load generator's accounts and orders (bench/orders.py: buys
and sells at three prices around 100 over four symbols, so orders rest, cross and fill) through
the real ledger and matcher cores in memory (testkit.pipeline), each command stamped by one of N
gateways in turn. For one of those N gateways it times, per decision on account.events:

- the tail thread: the old path (``Codec.decode`` + ``Event``) against ``hear`` (envelope first,
  the rest only for this gateway's commands), and each of hear's two outcomes alone;
- the event loop: ``Bus._decide`` over those items with the desk's position listeners (the
  gateway's frontier and the HTTP sessions).

Prints µs per decision (best of ``--repeat``); no broker, nothing asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from bench.orders import PER_ACCOUNT, SYMBOLS
from services.common.config import Settings
from services.gateway import commands as cmd
from services.gateway.bus import Bus
from services.gateway.directory import Directory
from services.gateway.hearing import Event, Interest, Unread, hear
from services.gateway.sessions import AccountSessions, Session
from testkit.pipeline import ACCOUNT_EVENTS, Pipeline, codec

ACCOUNTS = 200


def decisions(orders: int, gateways: int) -> tuple[list[tuple[bytes, int, int]], list[str]]:
    """(value, partition, offset) of every decision the orders caused, and each order's gateway
    instance id (by command id order)."""
    pipeline = Pipeline(partitions=2, project=False)
    ids = (f"{n:032x}" for n in range(10**9))
    stamp = lambda reply_to: cmd.Stamp(next(ids), 1_700_000_000_000_000, reply_to)  # noqa: E731
    accounts = [str(700_000 + i) for i in range(ACCOUNTS)]
    for symbol in SYMBOLS:
        pipeline.submit(*_named(cmd.create_symbol(stamp(""), symbol)))
    for account in accounts:
        pipeline.submit(*_named(cmd.create_account(stamp(""), account, 10**15)))
        for symbol in SYMBOLS:
            pipeline.submit(*_named(cmd.issue_shares(stamp(""), account, symbol, 10**9)))
    pipeline.drain()
    start = {p: pipeline.log.end(ACCOUNT_EVENTS, p) for p in range(2)}
    for k in range(orders):
        n, round_ = k % ACCOUNTS, k // ACCOUNTS
        spec = cmd.OrderSpec(
            SYMBOLS[(n + round_) % len(SYMBOLS)],
            "BUY" if round_ % 2 else "SELL",
            99 + (n + round_ % PER_ACCOUNT) % 3,
            1,
        )
        gateway = f"gateway-{k % gateways}"
        pipeline.submit(*_named(cmd.place_order(stamp(gateway), accounts[n], spec)))
        if k % 100 == 99:
            pipeline.drain()
    pipeline.drain()
    found = [
        (record.value, partition, offset)
        for partition, offset, record in pipeline.log.in_order(ACCOUNT_EVENTS, start)
    ]
    return found, [f"gateway-{k % gateways}" for k in range(orders)]


def _named(command: cmd.Command) -> tuple[str, dict]:
    return command.name, command.record


def best(repeat: int, run: Callable[[], object], count: int) -> float:
    """µs per item of the fastest of `repeat` runs."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return round(min(times) / count * 1e6, 2)


def measure(orders: int, gateways: int, repeat: int) -> dict:
    records, _ = decisions(orders, gateways)
    c = codec()
    envelopes = [c.decode(v)[1]["envelope"] for v, _, _ in records]
    # this gateway's commands, every one as if still pending (an upper bound on what it decodes)
    mine = {e["command_id"] for e in envelopes if e["reply_to"] == "gateway-0"}
    interest = Interest(mine, {}, Directory.TYPES)
    nobody, everyone = Interest(set(), {}, ()), Interest(_Every(), {}, ())

    def always() -> list:
        return [Event(*c.decode(v), p, o) for v, p, o in records]

    def lazily(wanted: Interest) -> Callable[[], list]:
        return lambda: [hear(c, v, p, o, wanted) for v, p, o in records]

    items = lazily(interest)()
    decoded = sum(not isinstance(i, Unread) for i in items)
    n = len(records)
    figures = {
        "gateways": gateways,
        "decisions": n,
        "per_order": round(n / orders, 2),
        "decoded_here": decoded,
        "tail_always_us": best(repeat, always, n),
        "tail_lazy_us": best(repeat, lazily(interest), n),
        "hear_decoded_us": best(repeat, lazily(everyone), n),
        "hear_skipped_us": best(repeat, lazily(nobody), n),
    }
    figures |= loop_costs(always(), items, repeat)
    return figures


def loop_costs(events: list, items: list, repeat: int) -> dict:
    """Bus._decide per decision with the desk's position listeners, no pending command (the
    decisions of other gateways' commands, most of them with several gateways)."""

    async def run() -> dict:
        bus = Bus(Settings(kafka="127.0.0.1:9"), "gateway-0", decision_timeout=30)
        for client in (bus.producer, bus.tail.consumer):
            client.close()
        sessions = AccountSessions()
        for k in range(0, ACCOUNTS, 2):  # half the accounts with an HTTP session here
            sessions.get(str(700_000 + k))
        bus.positions += [Session().note, Session().note, sessions.observe]
        return {
            "loop_always_us": best(repeat, lambda: bus._decide(events), len(events)),
            "loop_lazy_us": best(repeat, lambda: bus._decide(items), len(items)),
        }

    return asyncio.run(run())


class _Every:
    def __contains__(self, _: object) -> bool:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for gateways in (1, 2, 4):
        print(measure(args.orders, gateways, args.repeat), flush=True)


if __name__ == "__main__":
    main()
