"""The harness the matcher and ledger benchmarks share, three layers of one processor:

- ``core_rate``: the pure core alone, in commands per CPU second (the machine is shared, and "on
  one core" means per CPU-second), over several runs on fresh state; ``core_profile`` its
  hottest functions;
- ``apply_rate``: the service's own per-record cost without Kafka (decode, core, encode);
- ``service_rate``: the service on the broker with exactly-once: records produced first, then one
  processor runs through them (``Processor.run(records=n)``, counters read through
  prometheus_client's registry).
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import statistics
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Producer

from services.common.config import Settings
from services.common.kafka import producer_config
from services.common.processor import PartitionState, Processor


def core_rate(prepare: Callable[[], Callable[[], int]], commands: int, runs: int) -> dict:
    """`prepare` builds fresh state and returns the timed call, which applies `commands`
    commands and returns how many outputs they made."""
    rates, wall, outputs = [], [], 0
    for _ in range(runs):
        timed = prepare()
        gc.collect()  # the previous run's garbage is not this run's cost
        started, cpu = time.perf_counter(), time.process_time()
        outputs = timed()
        rates.append(commands / (time.process_time() - cpu))
        wall.append(commands / (time.perf_counter() - started))
    return {
        "commands": commands,
        "runs": runs,
        "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: context
        "commands_per_s_median": round(statistics.median(rates)),
        "commands_per_s_best": round(max(rates)),
        "commands_per_s_all": [round(r) for r in rates],
        "commands_per_wall_s_median": round(statistics.median(wall)),
        "outputs_per_command": round(outputs / commands, 2),
    }


def core_profile(call: Callable[[], object], top: int = 12) -> list[str]:
    """The `top` functions by own time while `call` runs (cProfile's table, header first)."""
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return lines[start : start + top + 1]


def apply_rate(state: PartitionState, values: list[bytes]) -> dict:
    """Decode + core + encode per record, no Kafka: the service's own CPU cost per command."""
    started = time.process_time()
    outputs = sum(len(state.apply(value)) for value in values)
    seconds = time.process_time() - started
    return {
        "commands": len(values),
        "commands_per_cpu_s": round(len(values) / seconds),
        "outputs_per_command": round(outputs / len(values), 2),
    }


def produce(settings: Settings, topic: str, records: Iterable[tuple[str, bytes, int | None]]):
    """(key, value, partition or None for the key's) records, appended with a plain producer."""
    producer = Producer(producer_config(settings))
    for key, value, partition in records:
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(topic, value, key, **extra)
                break
            except BufferError:  # local queue full: let it drain
                producer.poll(0.1)
    producer.flush()


def service_rate(processor: Processor, records: int) -> dict:
    """Run the processor through `records` input records already on its topic."""
    counters = ("batches", "records_out", "aborts")
    before = {name: processor.metrics.total(name) for name in counters}
    cpu, main_cpu = time.process_time(), time.thread_time()
    seconds = processor.run(records=records)
    done = {name: processor.metrics.total(name) - before[name] for name in counters}
    return {
        "commands": records,
        "partitions": processor.settings.partitions,
        "batch_records": processor.batch_records,
        "commands_per_s": round(records / seconds),
        "seconds": round(seconds, 2),
        "transactions": int(done["batches"]),
        "outputs": int(done["records_out"]),
        "aborts": int(done["aborts"]),
        "process_cpu_s": round(time.process_time() - cpu, 2),
        "main_thread_cpu_s": round(time.thread_time() - main_cpu, 2),  # the rest: librdkafka's
    }
