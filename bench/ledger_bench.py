"""Ledger throughput: the pure core alone, the shell's per-record cost, and the service on Kafka.

The mixed stream is a seeded session of services.ledger.simulation: 40 traders on 3 symbols
placing mostly passive limit orders (some crossing, IOC/FOK, post-only, GTD, market), cancelling,
reducing and replacing them, depositing and withdrawing, with the toy matcher's settlements (two
fills per trade, closes, reductions, refusals) interleaved a few records behind, as on the log.
`run(env)` returns the figures `python -m bench ledger_bench` records.
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import random
import statistics
import sys
import threading
import time
from collections import Counter

from services.ledger.simulation import Exchange, random_session
from services.ledger.state import Ledger


def mixed_log(records: int, partitions: int = 1, seed: int = 7) -> list[tuple[int, str, dict]]:
    ex = Exchange(partitions, keep_decisions=False)
    random_session(ex, random.Random(seed), records)
    return ex.log


def core_rate(n: int = 300_000, runs: int = 5) -> dict:
    log = [(name, rec) for _, name, rec in mixed_log(n)]
    rates, wall, decisions = [], [], 0
    for _ in range(runs):
        apply = Ledger(0, 1).apply
        gc.collect()  # the previous run's garbage is not this run's cost
        started, cpu = time.perf_counter(), time.process_time()
        decisions = sum(len(apply(name, rec)) for name, rec in log)
        # CPU time: the machine is shared, and "on one core" means per CPU-second
        rates.append(len(log) / (time.process_time() - cpu))
        wall.append(len(log) / (time.perf_counter() - started))
    return {
        "commands": len(log),
        "runs": runs,
        "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: context
        "commands_per_s_median": round(statistics.median(rates)),
        "commands_per_s_best": round(max(rates)),
        "commands_per_s_all": [round(r) for r in rates],
        "commands_per_wall_s_median": round(statistics.median(wall)),
        "decisions_per_command": round(decisions / len(log), 2),
        "mix": dict(Counter(name.rsplit(".", 1)[1] for name, _ in log).most_common()),
    }


def core_profile(n: int = 100_000, top: int = 12) -> list[str]:
    log = [(name, rec) for _, name, rec in mixed_log(n, seed=8)]
    apply = Ledger(0, 1).apply
    profiler = cProfile.Profile()
    profiler.enable()
    for name, rec in log:
        apply(name, rec)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return lines[start : start + top + 1]


def encoded(log: list[tuple[int, str, dict]]) -> list[tuple[int, str, bytes]]:
    from services.common.codec import Codec

    codec = Codec()
    return [(p, rec["envelope"]["key"], codec.encode(name, rec)) for p, name, rec in log]


def shell_rate(n: int = 50_000) -> dict:
    """Decode + core + encode per record, no Kafka: the service's own CPU cost per command."""
    from services.common.config import Settings
    from services.ledger.service import LedgerCore

    values = [value for _, _, value in encoded(mixed_log(n, seed=9))]
    part = LedgerCore(Settings(topic_prefix="bench.")).fresh(0, 1)
    started = time.process_time()
    outputs = sum(len(part.apply(value)) for value in values)
    seconds = time.process_time() - started
    return {
        "commands": len(values),
        "commands_per_cpu_s": round(len(values) / seconds),
        "outputs_per_command": round(outputs / len(values), 2),
    }


def service_rate(env, records: int = 100_000, batch_records: int = 5000) -> dict:
    """Pre-produce a session for 4 partitions, then time one ledger consuming it all with EOS."""
    from confluent_kafka import Producer

    from services.common.kafka import producer_config
    from services.common.processor import Processor
    from services.ledger.service import LedgerCore

    settings = env.settings()
    log = encoded(mixed_log(records, partitions=settings.partitions, seed=10))
    producer = Producer(producer_config(settings))
    topic = settings.topic("ledger.commands")
    for partition, key, value in log:
        while True:
            try:
                producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush()
    proc = Processor(LedgerCore(settings), settings, batch_records=batch_records)
    first: list[float] = []
    real_process = proc._process

    def timed_process(batch):
        if not first:
            first.append(time.perf_counter())
        real_process(batch)

    proc._process = timed_process
    counted = proc.metrics.records_in._value  # a process-wide counter: count from here
    target = counted.get() + len(log)

    def watch():
        while counted.get() < target:
            time.sleep(0.05)
        proc.stop()

    threading.Thread(target=watch, daemon=True).start()
    cpu, main_cpu = time.process_time(), time.thread_time()
    proc.run()
    finished = time.perf_counter()
    return {
        "commands": len(log),
        "partitions": settings.partitions,
        "batch_records": batch_records,
        "commands_per_s": round(len(log) / (finished - first[0])),
        "seconds": round(finished - first[0], 2),
        "process_cpu_s": round(time.process_time() - cpu, 2),
        "main_thread_cpu_s": round(time.thread_time() - main_cpu, 2),
    }


def run(env) -> dict:
    figures = {
        "core": core_rate(),
        "core_profile_tottime": core_profile(),
        "shell_apply": shell_rate(),
    }
    if env is not None:
        service_rate(env, records=5_000)  # warm the fresh broker; not reported
        # the loop's default transaction size, and a bigger one: latency traded for throughput
        figures["service"] = [service_rate(env, batch_records=b) for b in (2000, 20000)]
    return figures


if __name__ == "__main__":  # no broker: python -m bench.ledger_bench
    import json

    json.dump(run(None), sys.stdout, indent=1)
    print()
