"""Helpers for tests that talk to the real broker."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.common.config import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a service subprocess needs to see the test's settings."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka,
        DATABASE_URL=settings.database_url,
        MARKETLOG_TOPIC_PREFIX=settings.topic_prefix,
        MARKETLOG_PARTITIONS=str(settings.partitions),
        MARKETLOG_INSTANCE=settings.instance,
        MARKETLOG_RUN_DIR=str(settings.run_dir),
        **extra,
    )
    return env


def create_topics(
    settings: Settings, partitions: int, *names: str, compacted: bool = False
) -> None:
    config = {"cleanup.policy": "compact"} if compacted else {}
    admin = AdminClient({"bootstrap.servers": settings.kafka})
    futures = admin.create_topics([NewTopic(n, partitions, 1, config=config) for n in names])
    for future in futures.values():
        future.result()


def read_all(
    settings: Settings, topic: str, *, committed: bool = True, timeout: float = 30.0
) -> list:
    """Every record of every partition of topic, up to the end as of now, in partition order."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka,
            "group.id": "reader",
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, 10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records, pending, deadline = [], set(partitions), time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} never ended")
            for record in consumer.consume(1000, 0.2):
                if record.error() is None:
                    records.append(record)
                elif record.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(record.partition())
    finally:
        consumer.close()
    return records


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
