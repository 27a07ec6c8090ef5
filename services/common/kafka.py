"""Kafka client settings every service shares, so keys land on the same partitions everywhere."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from .config import Settings

# librdkafka's default partitioner differs from Java's; murmur2 makes key -> partition the same
# for every client, whatever its language.
PARTITIONER = "murmur2_random"
MAX_RECORD_BYTES = 64 * 1024 * 1024  # snapshots; topic-level max.message.bytes matches


# what a credentials file may set: how to authenticate, nothing that changes a client's behaviour
SECURITY_KEYS = {
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
}


class CredentialsError(RuntimeError):
    """The Kafka credentials file named by MARKETLOG_KAFKA_SECURITY is missing or unusable."""


def security_config(settings: Settings) -> dict[str, str]:
    """The SASL settings of this process's principal (cluster mode), or {} (plaintext).

    The file is JSON of librdkafka settings, written 0600 by infra/cluster.py; one readable by
    others is refused rather than used, so a leaked permission shows up at once."""
    if not settings.kafka_security:
        return {}
    path = Path(settings.kafka_security)
    try:
        mode = os.stat(path).st_mode
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"MARKETLOG_KAFKA_SECURITY={path}: {exc}") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise CredentialsError(f"{path}: mode {stat.S_IMODE(mode):o}, must be 600 (secrets)")
    if not isinstance(found, dict) or not found or set(found) - SECURITY_KEYS:
        raise CredentialsError(f"{path}: an object of {', '.join(sorted(SECURITY_KEYS))}")
    return {k: str(v) for k, v in found.items()}


def admin_config(settings: Settings, **extra: Any) -> dict:
    """An AdminClient's settings (provisioning, verify tools)."""
    return {"bootstrap.servers": settings.kafka, **security_config(settings), **extra}


def producer_config(settings: Settings, transactional_id: str | None = None, **extra: Any) -> dict:
    conf = {
        **security_config(settings),
        "bootstrap.servers": settings.kafka,
        "partitioner": PARTITIONER,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.max.bytes": MAX_RECORD_BYTES,
        "batch.size": 1_000_000,
    }
    if transactional_id:
        conf["transactional.id"] = settings.topic_prefix + transactional_id
        # An instance that dies mid-transaction and is not restarted under its id leaves the
        # transaction open until the broker aborts it after this long: until then its outputs'
        # readers and whoever takes its partitions over (their committed offsets are "unstable")
        # wait. Short, as Kafka Streams' 10 s under exactly-once: a batch commits well within it.
        conf["transaction.timeout.ms"] = 15_000
        # A transaction begun while the coordinator still completes the previous one gets
        # CONCURRENT_TRANSACTIONS; librdkafka retries AddOffsetsToTxn after retry.backoff.ms
        # (100 ms by default, doubling per retry), which was most of the p99 at 250 orders/s.
        # Measured: such retries succeed 11-16 ms later (docs/performance.md).
        conf["retry.backoff.ms"] = 10
    conf.update(extra)
    return conf


def consumer_config(settings: Settings, group: str | None, **extra: Any) -> dict:
    conf = {
        **security_config(settings),
        "bootstrap.servers": settings.kafka,
        "group.id": settings.topic_prefix + (group or "unused"),
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # A fetch returns as soon as committed data arrives, so a long wait costs no latency;
        # a short one costs the broker CPU (measured: 10 ms ~ 30% of a core per idle consumer).
        "fetch.wait.max.ms": 100,
        "receive.message.max.bytes": MAX_RECORD_BYTES + 1_000_000,
        # a restarted instance rejoins at once (static membership); a dead one is noticed in 10 s
        "session.timeout.ms": 10_000,
    }
    if group:
        conf["group.instance.id"] = f"{conf['group.id']}-{settings.instance}"
    conf.update(extra)
    return conf


class FatalErrors:
    """A client's ``error_cb``: remembers a fatal error so the service loop can end the process.

    librdkafka reports some fatal consumer errors only through this callback, not through
    consume() — e.g. a static member fenced after the broker came back (found by bench/chaos.py:
    the matcher lived on without a working consumer). A loop looks at ``error`` every turn; the
    process then exits non-zero and its supervisor starts a fresh one, which rejoins at once."""

    def __init__(self) -> None:
        self.error: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.fatal() or error.code() == KafkaError._FATAL:
            self.error = self.error or error
