"""The chaos run's brokers (bench/chaos.py): the one local broker, or `make cluster`'s three.

``BrokerFaults`` is what a broker fault does on each: on the single broker, kill -9 of it and a
restart on its data (everything waits); on the cluster (bench/cluster_env.py: three KRaft
brokers, RF 3, min.insync.replicas 2, SASL/SCRAM, each service its own principal with its ACLs),
kill -9 of the broker leading the most partitions of the run's topics (ties broken by the seed),
which comes back on its data after its down time while the other two serve.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench.cluster_env import ClusterEnv
from bench.env import BenchEnv
from infra.local import STATE
from services.common.config import Settings
from services.common.kafka import admin_config


def chaos_cluster_env() -> ClusterEnv:
    """The chaos run's cluster: under the bench's home, on MARKETLOG_BENCH_CLUSTER_PORT .. +5
    (default 28100) and the bench's PostgreSQL port (bench/env.py)."""
    home = Path(os.environ.get("MARKETLOG_BENCH_HOME", STATE / "bench"))
    port = int(os.environ.get("MARKETLOG_BENCH_CLUSTER_PORT", "28100"))
    return ClusterEnv(home, port, int(os.environ.get("MARKETLOG_BENCH_PG_PORT", "25434")))


class BrokerFaults:
    """kill -9 of the single broker, its restart on its data."""

    def __init__(self, env: BenchEnv | ClusterEnv) -> None:
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
