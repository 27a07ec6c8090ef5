"""Matcher throughput: the pure core alone, and the service through Kafka with exactly-once.

The mixed stream keeps about 1,000 resting orders per side around a fixed mid price: passive adds,
cancels of live orders, small IOCs that cross, and crossing limit orders that take and rest.
The measuring is bench/throughput.py's. `run(env)` returns the figures
`python -m bench matcher_bench` records.
"""

from __future__ import annotations

import random
import sys
from itertools import zip_longest

from bench import throughput
from services.common.codec import Codec
from services.common.config import Settings
from services.common.processor import Processor
from services.matcher.service import BATCH_RECORDS, TXN_INTERVAL_MS, MatcherCore
from services.matcher.state import BUY, SELL, Book, Matcher

MID = 1_000_000  # 100.0000 in price units
TICK = 100  # 0.01
SYMBOL = "BENCH"
SIZES = {"core": 300_000, "runs": 5, "profile": 100_000, "per_symbol": 50_000, "apply": 100_000}
QUICK = {"core": 20_000, "runs": 2, "profile": 10_000, "per_symbol": 5_000, "apply": 10_000}
METHODS = {"place": Book.place, "cancel": Book.cancel}


def mixed_stream(n: int, seed: int = 1, depth: int = 1000) -> tuple[list[tuple], list[tuple]]:
    """(warm-up that builds the book, n mixed commands). Each command is (op, args)."""
    rng = random.Random(seed)
    exchange = Matcher()
    live: list[int] = []  # ids that may still rest (dead ones get dropped when picked)
    next_id = 1
    ts = 1_700_000_000_000_000

    def add(out: list, side: str, price: int, qty: int, tif: str = "GTC") -> None:
        nonlocal next_id
        args = (SYMBOL, ts, next_id, f"acct{rng.randrange(50)}", side, price, qty, tif)
        out.append(("place", args))
        for event in exchange.place(*args):
            if event[0] == "rested":
                live.append(event[3])
        next_id += 1

    warm: list[tuple] = []
    for _ in range(depth):
        add(warm, BUY, MID - TICK * rng.randint(1, 60), 100 * rng.randint(1, 10))
        add(warm, SELL, MID + TICK * rng.randint(1, 60), 100 * rng.randint(1, 10))
    book = exchange.books[SYMBOL]
    stream: list[tuple] = []
    while len(stream) < n:
        ts += rng.randint(1, 50)
        roll = rng.random()
        side = BUY if rng.random() < 0.5 else SELL
        sign = -1 if side == BUY else 1
        if roll < 0.80 and len(book.orders) < 2 * depth:  # passive add
            add(stream, side, MID + sign * TICK * rng.randint(1, 60), 100 * rng.randint(1, 10))
        elif roll < 0.80:  # cancel a live order (swap-remove keeps the pick O(1))
            while live:
                i = rng.randrange(len(live))
                oid = live[i]
                live[i] = live[-1]
                live.pop()
                if oid in book.orders:
                    args = (SYMBOL, ts, oid)
                    stream.append(("cancel", args))
                    exchange.cancel(*args)
                    break
        elif roll < 0.92:  # small IOC through the touch
            add(stream, side, MID - sign * TICK * rng.randint(0, 3), 100 * rng.randint(1, 5), "IOC")
        else:  # crossing limit order: takes a little, rests the rest
            add(stream, side, MID - sign * TICK * rng.randint(0, 2), 100 * rng.randint(2, 12))
    return warm, stream


def _calls(commands: list[tuple]) -> list[tuple]:
    """What the service does per decoded command: find the book, call the command."""
    return [(METHODS[op], args[0], args[1:]) for op, args in commands]


def _run_calls(calls: list[tuple], matcher: Matcher) -> int:
    books, book = matcher.books, matcher.book
    events = 0
    for method, symbol, args in calls:
        events += len(method(books.get(symbol) or book(symbol), *args))
    return events


def _warmed(warm: list[tuple]) -> Matcher:
    matcher = Matcher()
    _run_calls(_calls(warm), matcher)
    return matcher


def core_rate(n: int, runs: int) -> dict:
    warm, stream = mixed_stream(n)
    calls = _calls(stream)
    last: list[Matcher] = []

    def prepare():
        last[:] = [_warmed(warm)]
        return lambda: _run_calls(calls, last[0])

    figures = throughput.core_rate(prepare, n, runs)
    book = last[0].books[SYMBOL]
    figures["mix"] = {op: sum(1 for c in stream if c[0] == op) for op in ("place", "cancel")}
    figures["resting_after"] = {"bids": len(book.resting(BUY)), "asks": len(book.resting(SELL))}
    return figures


def core_profile(n: int) -> list[str]:
    warm, stream = mixed_stream(n, seed=2)
    matcher, calls = _warmed(warm), _calls(stream)
    return throughput.core_profile(lambda: _run_calls(calls, matcher))


def encoded_stream(codec: Codec, symbols: int, per_symbol: int) -> list[tuple[str, bytes, None]]:
    """(symbol, Avro match command, None) for a mixed stream per symbol, round-robin."""
    per = []
    for i in range(symbols):
        warm, stream = mixed_stream(per_symbol, seed=10 + i)
        symbol = f"S{i}"
        per.append(
            [(symbol, _avro(codec, symbol, n, op, args), None)
             for n, (op, args) in enumerate(warm + stream)]
        )  # fmt: skip
    return [c for group in zip_longest(*per) for c in group if c is not None]


def _avro(codec: Codec, symbol: str, n: int, op: str, args: tuple) -> bytes:
    ts, oid = args[1], args[2]
    env = {"command_id": f"{symbol}-{n}", "key": symbol, "ts": ts, "reply_to": ""}
    if op == "cancel":
        rec = {"envelope": env, "account": "acct", "order_id": oid}
        return codec.encode("marketlog.match.CancelOrder", rec)
    _, _, _, account, side, price, qty, tif = args
    rec = {"envelope": env, "account": account, "order_id": oid, "side": side, "price": price,
           "qty": qty, "tif": tif}  # fmt: skip
    return codec.encode("marketlog.match.PlaceOrder", rec)


def service_rate(env, per_symbol: int, apply_sample: int, symbols: int = 4) -> dict:
    """Pre-produce the commands (keyed by symbol), then time one matcher consuming them all."""
    settings = env.settings()
    commands = encoded_stream(Codec(), symbols, per_symbol)
    throughput.produce(settings, settings.topic("match.commands"), commands)
    processor = Processor(
        MatcherCore(settings),
        settings,
        batch_records=BATCH_RECORDS,
        batch_interval=TXN_INTERVAL_MS / 1000,
    )
    figures = throughput.service_rate(processor, len(commands))
    values = [value for _, value, _ in commands[:apply_sample]]
    state = MatcherCore(Settings(topic_prefix="bench.")).fresh(0, 1)
    return figures | {"symbols": symbols, "apply_only": throughput.apply_rate(state, values)}


def run(env) -> dict:
    size = QUICK if env is not None and env.quick else SIZES
    figures = {
        "core": core_rate(size["core"], size["runs"]),
        "core_profile_tottime": core_profile(size["profile"]),
    }
    if env is not None:
        service_rate(env, per_symbol=5_000, apply_sample=1000)  # warm the broker; not reported
        figures["service"] = service_rate(env, size["per_symbol"], size["apply"])
    return figures


def summary(figures: dict) -> str:
    lines = [f"- core: {figures['core']['commands_per_s_median']:,} commands per CPU second"]
    if "service" in figures:
        s = figures["service"]
        lines += [
            f"- shell (decode, core, encode): {s['apply_only']['commands_per_cpu_s']:,}/s",
            f"- service through Kafka EOS, transactions of up to {s['batch_records']} records: "
            f"{s['commands_per_s']:,} commands/s",
        ]
    return "\n".join(lines)


if __name__ == "__main__":  # core only, no broker: python -m bench.matcher_bench
    import json

    json.dump(run(None), sys.stdout, indent=1)
    print()
