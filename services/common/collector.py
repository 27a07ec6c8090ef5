"""One look at the running exchange for the operator's figures (services/common/figures.py).

Kafka's admin API gives the end offset of every partition of every topic of infra/topics.toml
(ListOffsets, one request) and each processor group's committed offsets (the processors commit
them inside their transactions, so these are what the log's outputs reflect); PostgreSQL gives
the projector's applied offsets and the open orders and accounts of the projection; each
service's metrics endpoint (services/common/metrics.py, loopback, a fixed port per service)
gives its counters. A part that does not answer is left out of the sample (a service's scrape is
None), so the figures show what is there.

The gateway runs one ``Collector`` behind ``GET /dashboard/data``; ``python -m infra status``
runs one for two samples a second apart.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Mapping

import psycopg
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import REGISTRY, generate_latest

from .config import Settings, topology
from .figures import Sample, Scrape, parse_scrape
from .metrics import metrics_port
from .topics import load_spec

# processor group -> the topic role it consumes, per topology (config.TOPOLOGIES)
PROCESSOR_INPUTS = {
    "split": {"ledger": "ledger.commands", "matcher": "match.commands"},
    "engine": {"engine": "ledger.commands"},
}
PROJECTED = ("account.events", "market.events")  # what the projector reads
PROJECTOR_GROUP = "projector"  # its applied offsets' consumer group (services/projector)


def services_of(chosen: str) -> list[str]:
    """Every service with metrics in a topology."""
    return ["gateway", *PROCESSOR_INPUTS[chosen], "projector"]


class Collector:
    def __init__(
        self,
        settings: Settings,
        *,
        ports: Mapping[str, int] | None = None,
        local: str | None = None,
        timeout: float = 2.0,
        counts_every: float = 5.0,
    ) -> None:
        """`ports`: service -> metrics port (default: each service's, from the environment);
        `local`: the service this process is, read from its own registry (no HTTP);
        `counts_every`: seconds between two counts of open orders and accounts (each is a scan
        of its table, the dearest part of a look: docs/operations.md, "Costs")."""
        self.settings = settings
        chosen = topology()
        self.inputs = PROCESSOR_INPUTS[chosen]
        self.ports = dict(ports) if ports is not None else {}
        if ports is None:
            self.ports = {s: metrics_port(s) for s in services_of(chosen)}
        self.local = local
        self.timeout = timeout
        self.prefix = settings.topic_prefix
        self.topics = [spec.name for spec in load_spec(settings)]
        self.admin = AdminClient({"bootstrap.servers": settings.kafka})
        self._db: psycopg.Connection | None = None
        self.counts_every = counts_every
        self._counts: tuple[int | None, int | None] = (None, None)
        self._counted_at = -math.inf

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def sample(self) -> Sample:
        ends = self._ends()
        applied, open_orders, accounts = self._projection()
        return Sample(
            at=time.monotonic(),
            ends=ends,
            committed=self._committed(),
            inputs=self.inputs,
            applied=applied,
            scrapes={service: self._scrape(service) for service in self.ports},
            open_orders=open_orders,
            accounts=accounts,
        )

    # -- Kafka -----------------------------------------------------------------------------
    def _role(self, topic: str) -> str:
        return topic[len(self.prefix) :]

    def _ends(self) -> dict[tuple[str, int], int]:
        meta = self.admin.list_topics(timeout=self.timeout).topics
        wanted = {
            TopicPartition(t, p): OffsetSpec.latest()
            for t in self.topics
            if t in meta
            for p in meta[t].partitions
        }
        if not wanted:
            return {}
        futures = self.admin.list_offsets(wanted, request_timeout=self.timeout)
        return {
            (self._role(tp.topic), tp.partition): future.result().offset
            for tp, future in futures.items()
        }

    def _committed(self) -> dict[str, dict[int, int]]:
        """Committed offsets per group (the API takes one group per request); a group that does
        not exist yet is left out."""
        found: dict[str, dict[int, int]] = {}
        for group in self.inputs:
            request = [ConsumerGroupTopicPartitions(self.prefix + group)]
            try:
                futures = self.admin.list_consumer_group_offsets(
                    request, request_timeout=self.timeout
                )
                result = next(iter(futures.values())).result()
            except KafkaException:
                continue
            offsets = {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}
            if offsets:
                found[group] = offsets
        return found

    # -- PostgreSQL ----------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        if self._db is None or self._db.closed or self._db.broken:
            self._db = psycopg.connect(
                self.settings.database_url,
                autocommit=True,
                connect_timeout=max(int(self.timeout), 1),
                options=f"-c statement_timeout={int(self.timeout * 1000)}",
            )
        return self._db

    def _projection(self) -> tuple[dict[tuple[str, int], int] | None, int | None, int | None]:
        """(applied offsets, open orders, accounts); Nones while the database or the projection
        schema is not there."""
        try:
            db = self._connect()
            rows = db.execute(
                "SELECT topic, partition, next_offset FROM projection.applied_offsets"
                " WHERE consumer_group = %s",
                [self.prefix + PROJECTOR_GROUP],
            ).fetchall()
            if time.monotonic() - self._counted_at >= self.counts_every:
                open_orders = db.execute(
                    "SELECT count(*) FROM projection.orders WHERE open_qty > 0"
                ).fetchone()[0]
                accounts = db.execute("SELECT count(*) FROM projection.accounts").fetchone()[0]
                self._counts, self._counted_at = (open_orders, accounts), time.monotonic()
        except psycopg.Error:
            self.close()
            self._counted_at = -math.inf
            return None, None, None
        return {(self._role(t), p): o for t, p, o in rows}, *self._counts

    # -- metrics -------------------------------------------------------------------------------
    def _scrape(self, service: str) -> Scrape | None:
        if service == self.local:
            return parse_scrape(generate_latest(REGISTRY).decode())
        port = self.ports.get(service)
        if not port:
            return None
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as answer:
                return parse_scrape(answer.read().decode())
        except (OSError, ValueError):  # not running, or not a metrics endpoint
            return None
