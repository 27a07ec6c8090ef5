"""The real broker and database a benchmark run uses: started for the run, stopped after it.

Benchmarks use their own ports (28092, 25434) and state (.state/bench) so they never disturb a
running `make up`, and each suite gets fresh topics under its own prefix. MARKETLOG_BENCH_HOME,
MARKETLOG_BENCH_KAFKA_PORT and MARKETLOG_BENCH_PG_PORT move them, for two runs side by side.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import psycopg

from infra.local import STATE, LocalKafka, LocalPostgres, with_database
from services.common.config import Settings
from services.common.topics import provision


class BenchEnv:
    def __init__(self, out: Path, *, quick: bool = False) -> None:
        self.results: dict[str, dict] = {}  # figures of the suites run so far, by suite
        self.out = out  # the results directory: a suite may write files of its own there
        self.quick = quick  # small sizes and short steps: proves the harness, measures little
        home = Path(os.environ.get("MARKETLOG_BENCH_HOME", STATE / "bench"))
        port = int(os.environ.get("MARKETLOG_BENCH_KAFKA_PORT", "28092"))
        self.kafka = LocalKafka(home / "kafka", port, port + 1)
        self.postgres = LocalPostgres(
            home / "postgres", int(os.environ.get("MARKETLOG_BENCH_PG_PORT", "25434")), durable=True
        )
        self.home = home

    def __enter__(self) -> BenchEnv:
        self.kafka.stop()
        self.postgres.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        self.kafka.start()
        self.postgres.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kafka.stop()
        self.postgres.stop()

    def settings(self, partitions: int = 4) -> Settings:
        """Fresh topics (and a fresh database) for one suite."""
        tag = uuid.uuid4().hex[:8]
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE b{tag}")
        found = Settings(
            kafka=self.kafka.bootstrap,
            topic_prefix=f"b{tag}.",
            database_url=with_database(self.postgres.url, f"b{tag}"),
            partitions=partitions,
            run_dir=self.home / "run" / tag,
        )
        provision(found)
        return found
