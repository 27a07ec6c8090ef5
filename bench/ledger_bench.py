"""Ledger throughput: the pure core alone, the shell's per-record cost, and the service on Kafka.

The mixed stream is a seeded session of testkit.simulation: 40 traders on 3 symbols placing
mostly passive limit orders (some crossing, IOC/FOK, post-only, GTD, market), cancelling,
reducing and replacing them, depositing and withdrawing, with the real matcher's settlements (two
fills per trade, closes, reductions, refusals, placements) interleaved a few records behind, as on
the log (testkit.pipeline runs both cores in memory). The measuring is bench/throughput.py's.
`run(env)` returns the figures `python -m bench ledger_bench` records.
"""

from __future__ import annotations

import random
import sys
from collections import Counter

from bench import throughput
from services.common.codec import Codec
from services.common.config import Settings
from services.common.processor import Processor
from services.ledger.service import LedgerCore
from services.ledger.state import Ledger
from testkit.pipeline import LEDGER_COMMANDS, Pipeline
from testkit.simulation import random_session

SIZES = {"core": 300_000, "runs": 5, "profile": 100_000, "shell": 50_000, "service": 100_000}
QUICK = {"core": 20_000, "runs": 2, "profile": 10_000, "shell": 5_000, "service": 10_000}
BATCHES = (2000, 20000)  # the loop's default transaction size, and a bigger one


def mixed_log(records: int, partitions: int = 1, seed: int = 7) -> list[tuple[int, str, dict]]:
    """(partition, record name, record) of ledger.commands, in the order they were appended."""
    pipeline = Pipeline(partitions, project=False)
    random_session(pipeline, random.Random(seed), records)
    return [(p, name, rec) for p, _, name, rec in pipeline.records(LEDGER_COMMANDS)]


def core_rate(n: int, runs: int) -> dict:
    log = [(name, rec) for _, name, rec in mixed_log(n)]

    def prepare():
        apply = Ledger(0, 1).apply
        return lambda: sum(len(apply(name, rec)) for name, rec in log)

    figures = throughput.core_rate(prepare, len(log), runs)
    figures["mix"] = dict(Counter(name.rsplit(".", 1)[1] for name, _ in log).most_common())
    return figures


def core_profile(n: int) -> list[str]:
    log = [(name, rec) for _, name, rec in mixed_log(n, seed=8)]
    apply = Ledger(0, 1).apply
    return throughput.core_profile(lambda: [apply(name, rec) for name, rec in log])


def encoded(log: list[tuple[int, str, dict]]) -> list[tuple[str, bytes, int]]:
    """(key, Avro value, partition) per record."""
    codec = Codec()
    return [(rec["envelope"]["key"], codec.encode(name, rec), p) for p, name, rec in log]


def shell_rate(n: int) -> dict:
    values = [value for _, value, _ in encoded(mixed_log(n, seed=9))]
    return throughput.apply_rate(LedgerCore(Settings(topic_prefix="bench.")).fresh(0, 1), values)


def service_rate(env, records: int, batch_records: int = 2000) -> dict:
    """Pre-produce a session for 4 partitions, then time one ledger consuming it all with EOS."""
    settings = env.settings()
    log = encoded(mixed_log(records, partitions=settings.partitions, seed=10))
    throughput.produce(settings, settings.topic("ledger.commands"), log)
    processor = Processor(LedgerCore(settings), settings, batch_records=batch_records)
    return throughput.service_rate(processor, len(log))


def run(env) -> dict:
    size = QUICK if env is not None and env.quick else SIZES
    figures = {
        "core": core_rate(size["core"], size["runs"]),
        "core_profile_tottime": core_profile(size["profile"]),
        "shell_apply": shell_rate(size["shell"]),
    }
    if env is not None:
        service_rate(env, records=5_000)  # warm the fresh broker; not reported
        figures["service"] = [service_rate(env, size["service"], b) for b in BATCHES]
    return figures


def summary(figures: dict) -> str:
    lines = [
        f"- core: {figures['core']['commands_per_s_median']:,} commands per CPU second (median)",
        f"- shell (decode, core, encode): {figures['shell_apply']['commands_per_cpu_s']:,}/s",
    ]
    for s in figures.get("service", []):
        lines.append(
            f"- service through Kafka EOS, {s['batch_records']}-record transactions: "
            f"{s['commands_per_s']:,} commands/s"
            + (f" ({s['transactions']} transactions)" if "transactions" in s else "")
        )
    return "\n".join(lines)


if __name__ == "__main__":  # no broker: python -m bench.ledger_bench
    import json

    json.dump(run(None), sys.stdout, indent=1)
    print()
