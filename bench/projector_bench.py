"""The projector: events/s into PostgreSQL, and the time to rebuild from a 1,000,000-event log.

A synthetic, self-consistent history (testkit.history: the real ledger and matcher in memory;
limit and market orders that trade, cancels, reduces, deposits, withdrawals, share issues,
rejections) is pre-encoded and appended to account.events and market.events with a plain
idempotent producer. Then:

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
import subprocess
import sys
import time

from bench.cpu import cpu_seconds, postmaster_pid, tree_seconds
from bench.env import BenchEnv
from infra.local import LocalPostgres
from infra.stack import settings_env
from services.common.config import Settings
from services.common.reader import end_offsets
from services.projector import schema
from testkit import history

EVENTS = 1_000_000
QUICK_EVENTS = 50_000
ACCOUNTS = 5_000
SYMBOLS = 50


def produce_history(settings: Settings, events: int) -> tuple[int, dict, float]:
    """Generate, encode and append the history in chunks; returns (count, mix, produce seconds)."""
    mix: collections.Counter = collections.Counter()
    count, producing = 0, 0.0
    for chunk in history.history_chunks(events, seed=42, accounts=ACCOUNTS, symbols=SYMBOLS):
        mix.update(name.rsplit(".", 1)[1] for _, _, name, _ in chunk)
        encoded = history.encode(chunk)
        started = time.monotonic()
        count += history.produce(settings, encoded)
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
    topics = [settings.topic(role) for role in ("account.events", "market.events")]
    return sum(end_offsets(settings, topics).values())


def serve(settings: Settings, events: int, postgres: LocalPostgres) -> dict:
    end = log_end(settings)
    progress = Progress(settings)
    pg_cpu = tree_seconds(postmaster_pid(postgres))
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.projector", "serve"],
        env=settings_env(settings),
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
        projector_cpu = cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
        progress.conn.close()
    time.sleep(0.5)  # its backend exits and is reaped: its CPU shows in the postmaster's
    pg_cpu = tree_seconds(postmaster_pid(postgres)) - pg_cpu
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
        env=settings_env(settings),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    after = table_counts(settings)
    if after != before:
        raise RuntimeError(f"rebuild differs from the served build: {before} vs {after}")
    return {"seconds": round(seconds, 1), "rows": after}


def run(env: BenchEnv) -> dict:
    events = QUICK_EVENTS if env.quick else EVENTS
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
        "serve": serve(settings, count, env.postgres),
        "rebuild": rebuild(settings),
    }


def summary(figures: dict) -> str:
    serve, rebuild = figures["serve"], figures["rebuild"]
    return (
        f"- serve: {serve['events_per_s']:,} events/s into PostgreSQL "
        f"({figures['history']['events']:,} events; CPU µs per event: projector "
        f"{serve['projector_cpu_us_per_event']}, PostgreSQL {serve['postgres_cpu_us_per_event']})\n"
        f"- rebuild of the same log: {rebuild['seconds']} s"
    )
