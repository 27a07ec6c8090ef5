"""Matcher throughput: the pure core alone, and the service through Kafka with exactly-once.

The mixed stream keeps about 1,000 resting orders per side around a fixed mid price: passive adds,
cancels of live orders, small IOCs that cross, and crossing limit orders that take and rest.
`run(env)` returns the figures `python -m bench matcher_bench` records.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import statistics
import sys
import time

from services.matcher.state import BUY, SELL, Book, Exchange

MID = 1_000_000  # 100.0000 in price units
TICK = 100  # 0.01
SYMBOL = "BENCH"


def mixed_stream(n: int, seed: int = 1, depth: int = 1000) -> tuple[list[tuple], list[tuple]]:
    """(warm-up that builds the book, n mixed commands). Each command is (op, args)."""
    rng = random.Random(seed)
    exchange = Exchange()
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


def _replay(commands: list[tuple], exchange: Exchange) -> int:
    """What the service does per decoded command: find the book, call the command."""
    calls = [(METHODS[op], args[0], args[1:]) for op, args in commands]
    return _run_calls(calls, exchange)


METHODS = {"place": Book.place, "cancel": Book.cancel}


def _run_calls(calls: list[tuple], exchange: Exchange) -> int:
    books, book = exchange.books, exchange.book
    events = 0
    for method, symbol, args in calls:
        events += len(method(books.get(symbol) or book(symbol), *args))
    return events


def core_rate(n: int = 300_000, runs: int = 5) -> dict:
    warm, stream = mixed_stream(n)
    calls = [(METHODS[op], args[0], args[1:]) for op, args in stream]
    rates, wall = [], []
    for _ in range(runs):
        exchange = Exchange()
        _replay(warm, exchange)
        started, cpu = time.perf_counter(), time.process_time()
        events = _run_calls(calls, exchange)
        # CPU time: the machine is shared, and "on one core" means per CPU-second
        rates.append(n / (time.process_time() - cpu))
        wall.append(n / (time.perf_counter() - started))
    book = exchange.books[SYMBOL]
    ops = {op: sum(1 for c in stream if c[0] == op) for op in ("place", "cancel")}
    return {
        "commands": n,
        "runs": runs,
        "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: context
        "commands_per_s_best": round(max(rates)),
        "commands_per_s_median": round(statistics.median(rates)),
        "commands_per_s_all": [round(r) for r in rates],
        "commands_per_wall_s_median": round(statistics.median(wall)),
        "events_per_command": round(events / n, 2),
        "mix": ops,
        "resting_after": {"bids": len(book.resting(BUY)), "asks": len(book.resting(SELL))},
    }


def core_profile(n: int = 100_000, top: int = 12) -> list[str]:
    warm, stream = mixed_stream(n, seed=2)
    exchange = Exchange()
    _replay(warm, exchange)
    calls = [(METHODS[op], args[0], args[1:]) for op, args in stream]
    profiler = cProfile.Profile()
    profiler.enable()
    _run_calls(calls, exchange)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
    stats.print_stats(top)
    lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return lines[start : start + top + 1]


def encoded_stream(codec, symbols: int, per_symbol: int) -> list[tuple[str, bytes]]:
    """(symbol, Avro match command) for a mixed stream per symbol, interleaved round-robin."""
    from itertools import zip_longest

    per = []
    for i in range(symbols):
        warm, stream = mixed_stream(per_symbol, seed=10 + i)
        symbol = f"S{i}"
        per.append([(symbol, _avro(codec, symbol, n, op, args)) for n, (op, args) in
                    enumerate(warm + stream)])  # fmt: skip
    return [c for group in zip_longest(*per) for c in group if c is not None]


def _avro(codec, symbol: str, n: int, op: str, args: tuple) -> bytes:
    ts, oid = args[1], args[2]
    env = {"command_id": f"{symbol}-{n}", "key": symbol, "ts": ts, "reply_to": ""}
    if op == "cancel":
        rec = {"envelope": env, "account": "acct", "order_id": oid}
        return codec.encode("marketlog.match.CancelOrder", rec)
    _, _, _, account, side, price, qty, tif = args
    rec = {"envelope": env, "account": account, "order_id": oid, "side": side, "price": price,
           "qty": qty, "tif": tif}  # fmt: skip
    return codec.encode("marketlog.match.PlaceOrder", rec)


def service_apply_rate(commands: list[tuple[str, bytes]]) -> dict:
    """Decode + core + encode, no Kafka: the service's own CPU cost per command."""
    from services.common.config import Settings
    from services.matcher.service import MatcherCore

    core = MatcherCore(Settings(topic_prefix="bench."))
    part = core.fresh(0, 1)
    started = time.process_time()
    outputs = sum(len(part.apply(value)) for _, value in commands)
    seconds = time.process_time() - started
    return {
        "commands": len(commands),
        "commands_per_cpu_s": round(len(commands) / seconds),
        "outputs_per_command": round(outputs / len(commands), 2),
    }


def service_rate(env, symbols: int = 4, per_symbol: int = 50_000) -> dict:
    """Pre-produce the commands, then time one processor consuming them all with EOS."""
    import threading

    from confluent_kafka import Producer

    from services.common.codec import Codec
    from services.common.kafka import producer_config
    from services.matcher.service import processor

    settings = env.settings()
    commands = encoded_stream(Codec(), symbols, per_symbol)
    producer = Producer(producer_config(settings))
    topic = settings.topic("match.commands")
    for symbol, value in commands:
        while True:
            try:
                producer.produce(topic, value, symbol)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush()
    proc = processor(settings)
    first: list[float] = []
    real_process = proc._process

    def timed_process(records):
        if not first:
            first.append(time.perf_counter())
        real_process(records)

    proc._process = timed_process
    done = threading.Event()

    counted = proc.metrics.records_in._value  # a process-wide counter: count from here
    target = counted.get() + len(commands)

    def watch():
        while counted.get() < target:
            time.sleep(0.05)
        done.set()
        proc.stop()

    threading.Thread(target=watch, daemon=True).start()
    cpu, main_cpu = time.process_time(), time.thread_time()
    proc.run()
    finished = time.perf_counter()
    main_cpu = time.thread_time() - main_cpu
    return {
        "commands": len(commands),
        "symbols": symbols,
        "partitions": settings.partitions,
        "batch_records": proc.batch_records,
        "commands_per_s": round(len(commands) / (finished - first[0])),
        "seconds": round(finished - first[0], 2),
        "process_cpu_s": round(time.process_time() - cpu, 2),
        "main_thread_cpu_s": round(main_cpu, 2),  # the rest is librdkafka's threads
        "apply_only": service_apply_rate(commands[:100_000]),
    }


def run(env) -> dict:
    figures = {"core": core_rate(), "core_profile_tottime": core_profile()}
    if env is not None:
        service_rate(env, per_symbol=5_000)  # warm the fresh broker's JIT; not reported
        figures["service"] = service_rate(env)
    return figures


if __name__ == "__main__":  # core only, no broker: python -m bench.matcher_bench
    import json

    json.dump(run(None), sys.stdout, indent=1)
    print()
