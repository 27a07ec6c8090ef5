"""The chaos run's brokers (bench/chaos.py): the one local broker, or `make cluster`'s three.

``BrokerFaults`` is what a broker fault does on each: on the single broker, kill -9 of it and a
restart on its data (everything waits); on the cluster (``ClusterEnv``: three KRaft brokers, RF 3,
min.insync.replicas 2, SASL/SCRAM, each service its own principal with its ACLs), kill -9 of the
broker leading the most partitions of the run's topics (ties broken by the seed), which comes back
on its data after its down time while the other two serve.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import uuid
from collections import Counter
from pathlib import Path

import psycopg
from confluent_kafka.admin import AdminClient

from bench.env import BenchEnv
from infra.cluster import GRANTS, Cluster
from infra.local import with_database
from services.common.config import Settings
from services.common.kafka import admin_config
from services.common.topics import provision


class ClusterEnv(BenchEnv):
    """Three brokers (ports MARKETLOG_BENCH_CLUSTER_PORT .. +5, default 28100) and the bench's
    PostgreSQL, under the bench's home; fresh topics and grants per ``settings``."""

    def __init__(self, out: Path) -> None:
        super().__init__(out)
        port = int(os.environ.get("MARKETLOG_BENCH_CLUSTER_PORT", "28100"))
        self.cluster = Cluster(self.home / "cluster", port)

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

    def settings(self, partitions: int = 4) -> Settings:
        """Infra's own principal (the audits, the checks) on fresh topics; services get theirs
        from ``credentials``."""
        tag = uuid.uuid4().hex[:8]
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE b{tag}")
        found = self.cluster.settings(
            topic_prefix=f"b{tag}.",
            database_url=with_database(self.postgres.url, f"b{tag}"),
            partitions=partitions,
            run_dir=self.home / "run" / tag,
        )
        provision(found)
        self.cluster.grant(prefix=found.topic_prefix)
        return found

    def credentials(self) -> dict[str, str]:
        return {s: str(self.cluster.credentials(s)) for s in GRANTS}


class BrokerFaults:
    """kill -9 of the single broker, its restart on its data."""

    def __init__(self, env: BenchEnv) -> None:
        self.env = env

    def pick(self, settings: Settings, rng: random.Random) -> str:
        return "kafka"

    def kill(self, target: str) -> None:
        os.killpg(int(self.env.kafka.pid_file.read_text()), signal.SIGKILL)

    def restart(self, target: str) -> None:
        self.env.kafka.start()


class ClusterBrokerFaults(BrokerFaults):
    """kill -9 of one broker of three; the others keep the partitions' two in-sync replicas."""

    env: ClusterEnv

    def pick(self, settings: Settings, rng: random.Random) -> str:
        """The broker leading the most partitions of the run's topics now. (Not the KRaft
        controller: a broker's metadata names a random live broker as controller.)"""
        admin = AdminClient(admin_config(settings))
        topics = admin.list_topics(timeout=10).topics
        leads: Counter = Counter(
            p.leader
            for name, topic in topics.items()
            if name.startswith(settings.topic_prefix)
            for p in topic.partitions.values()
        )
        ids = [n.node_id for n in self.env.cluster.nodes]
        most = max(leads[i] for i in ids)
        chosen = rng.choice([i for i in ids if leads[i] == most])
        return f"broker-{chosen} (leads {leads[chosen]} of {sum(leads.values())} partitions)"

    def _node(self, target: str) -> int:
        return int(target.split()[0].removeprefix("broker-")) - 1

    def kill(self, target: str) -> None:
        self.env.cluster.nodes[self._node(target)].kill()

    def restart(self, target: str) -> None:
        self.env.cluster.start_node(self._node(target), timeout=120)
