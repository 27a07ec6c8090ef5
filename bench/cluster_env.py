"""Three brokers as `make cluster` runs them and a PostgreSQL, for a benchmark run on a cluster
(bench/chaos_cluster.py, bench/scale.py): started together, stopped together.

Three KRaft brokers (replication 3, min.insync.replicas 2, SASL/SCRAM, each service its own
principal with its ACLs) on ``cluster_port`` .. +5 and a durable PostgreSQL on ``pg_port``, all
under ``home``, which is wiped first. A failed start stops whatever did start (no broker is left
behind holding its memory and ports). Each run gets fresh topics, grants and a database
(``settings``; bench/scale.py's ``fresh`` gives each principal its own settings).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg

from infra.cluster import GRANTS, Cluster
from infra.local import LocalPostgres, with_database
from services.common.config import Settings
from services.common.topics import provision


class ClusterEnv:
    def __init__(self, home: Path, cluster_port: int, pg_port: int) -> None:
        self.home = home
        self.cluster = Cluster(home / "cluster", cluster_port)
        self.postgres = LocalPostgres(home / "postgres", pg_port, durable=True)

    def __enter__(self) -> ClusterEnv:
        self.cluster.stop()
        self.postgres.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        try:
            self.cluster.start()
            self.postgres.start()
        except BaseException:  # e.g. a port taken: leave no broker behind
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.stop()
        self.postgres.stop()

    def fresh_fields(self, partitions: int) -> dict:
        """A fresh database, and the Settings fields naming it and fresh topics (not made yet)."""
        tag = uuid.uuid4().hex[:8]
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE b{tag}")
        return {
            "topic_prefix": f"b{tag}.",
            "database_url": with_database(self.postgres.url, f"b{tag}"),
            "partitions": partitions,
            "run_dir": self.home / "run" / tag,
        }

    def settings(self, partitions: int = 4) -> Settings:
        """Infra's own principal (the audits, the checks) on fresh topics, every service granted
        its ACLs on them; services get their own principals from ``credentials``."""
        found = self.cluster.settings(**self.fresh_fields(partitions))
        provision(found)
        self.cluster.grant(GRANTS, prefix=found.topic_prefix)
        return found

    def credentials(self) -> dict[str, str]:
        return {s: str(self.cluster.credentials(s)) for s in GRANTS}
