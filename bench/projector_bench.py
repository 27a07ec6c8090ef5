"""The projector: events/s into PostgreSQL, and the time to rebuild from a 1,000,000-event log.

A synthetic, self-consistent history (services.projector.synth: limit and market orders that
trade, cancels, reduces, deposits, withdrawals, share issues, rejections) is pre-encoded and
appended to account.events and market.events with a plain idempotent producer. Then:

1. serve: `python -m services.projector serve` starts on an empty database and catches up with
   the whole log, as after a fresh deploy; events/s is measured from its first commit to the last
   (start-up excluded) and the CPU seconds of the projector and of PostgreSQL are reported per
   event, which stay meaningful when other work shares the machine.
2. rebuild: `python -m services.projector rebuild` replays the same log from offset zero into a
   side schema and swaps it in; wall time of the whole command, start-up included.
The two builds must agree: row counts of every table are compared.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.env import BenchEnv
from services.common.config import Settings
from services.projector import schema, synth

EVENTS = 1_000_000
ACCOUNTS = 5_000
SYMBOLS = 50


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka,
        DATABASE_URL=settings.database_url,
        MARKETLOG_TOPIC_PREFIX=settings.topic_prefix,
        MARKETLOG_RUN_DIR=str(settings.run_dir),
    )
    return env


def _ticks(pid: int, children_too: bool = False) -> int:
    """utime + stime (+ cutime + cstime: children that exited) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(f) for f in fields[11 : 15 if children_too else 13])


def _cpu_seconds(pid: int) -> float:
    return _ticks(pid) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_seconds(port: int) -> float:
    """The cluster's CPU so far: the postmaster, its live children, and exited backends."""
    found = subprocess.run(["pgrep", "-f", f"postgres.*-p {port}"], capture_output=True, text=True)
    total = 0
    for parent in (int(p) for p in found.stdout.split()):
        total += _ticks(parent, children_too=True)
        children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
        total += sum(_ticks(int(c)) for c in children.stdout.split())
    return total / os.sysconf("SC_CLK_TCK")


def produce_history(settings: Settings, events: int) -> tuple[int, dict, float]:
    """Generate, encode and append the history in chunks; returns (count, mix, produce seconds)."""
    mix: collections.Counter = collections.Counter()
    count, producing = 0, 0.0
    for chunk in synth.history_chunks(events, seed=42, accounts=ACCOUNTS, symbols=SYMBOLS):
        mix.update(name.rsplit(".", 1)[1] for _, _, name, _ in chunk)
        encoded = synth.encode(chunk)
        started = time.monotonic()
        count += synth.produce(settings, encoded)
        producing += time.monotonic() - started
    return count, dict(mix.most_common()), producing


class Progress:
    """Polls the applied offsets over one connection (new connections would cost PostgreSQL)."""

    def __init__(self, settings: Settings) -> None:
        self.conn = schema.connect(settings.database_url)

    def applied(self) -> int:
        try:
            query = "SELECT coalesce(sum(next_offset), 0)::bigint FROM applied_offsets"
            return self.conn.execute(query).fetchone()[0]
        except Exception:  # the schema is not there yet
            return 0


def log_end(settings: Settings) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka, "group.id": "bench-probe"})
    total = 0
    for role in ("account.events", "market.events"):
        topic = settings.topic(role)
        for p in consumer.list_topics(topic, 10).topics[topic].partitions:
            total += consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
    consumer.close()
    return total


def serve(settings: Settings, events: int, pg_port: int) -> dict:
    end = log_end(settings)
    progress = Progress(settings)
    pg_cpu = _postgres_cpu_seconds(pg_port)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.projector", "serve"],
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = None
    try:
        while (done := progress.applied()) < end:
            if first is None and done:
                first = (time.monotonic(), done)
            if proc.poll() is not None:
                raise RuntimeError(f"projector exited with {proc.returncode}")
            time.sleep(0.1)
        finished = time.monotonic()
        projector_cpu = _cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
        progress.conn.close()
    time.sleep(0.5)  # its backend exits and is reaped: its CPU shows in the postmaster's
    pg_cpu = _postgres_cpu_seconds(pg_port) - pg_cpu
    first_time, first_done = first or (started, 0)
    return {
        "events": events,
        "seconds_incl_startup": round(finished - started, 1),
        "events_per_s": round((end - first_done) / max(finished - first_time, 1e-9)),
        "projector_cpu_us_per_event": round(projector_cpu / events * 1e6, 1),
        "postgres_cpu_us_per_event": round(pg_cpu / events * 1e6, 1),
    }


def table_counts(settings: Settings) -> dict[str, int]:
    with schema.connect(settings.database_url) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in schema.tables(conn)
        }


def rebuild(settings: Settings) -> dict:
    before = table_counts(settings)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "services.projector", "rebuild"],
        env=_env(settings),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    after = table_counts(settings)
    if after != before:
        raise RuntimeError(f"rebuild differs from the served build: {before} vs {after}")
    return {"seconds": round(seconds, 1), "rows": after}


def run(env: BenchEnv, events: int = EVENTS) -> dict:
    settings = env.settings(partitions=4)
    started = time.monotonic()
    count, mix, producing = produce_history(settings, events)
    prepared = time.monotonic() - started
    return {
        "history": {
            "events": count,
            "accounts": ACCOUNTS,
            "symbols": SYMBOLS,
            "partitions": settings.partitions,
            "mix": mix,
            "generate_encode_produce_s": round(prepared, 1),
            "produce_s": round(producing, 1),
        },
        "serve": serve(settings, count, env.postgres.port),
        "rebuild": rebuild(settings),
    }
