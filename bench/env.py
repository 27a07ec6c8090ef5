"""The real broker and database a benchmark run uses: started for the run, stopped after it.

Benchmarks use their own ports (39092, 55434) and state (.state/bench) so they never disturb a
running `make up`, and each suite gets fresh topics under its own prefix.
"""

from __future__ import annotations

import shutil
import uuid

import psycopg

from infra.local import STATE, LocalKafka, LocalPostgres
from services.common.config import Settings
from services.common.topics import provision


class BenchEnv:
    def __init__(self) -> None:
        home = STATE / "bench"
        self.kafka = LocalKafka(home / "kafka", 39092, 39093)
        self.postgres = LocalPostgres(home / "postgres", 55434, durable=True)
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
            database_url=self.postgres.url.rsplit("/", 1)[0] + f"/b{tag}",
            partitions=partitions,
            run_dir=self.home / "run" / tag,
        )
        provision(found)
        return found
