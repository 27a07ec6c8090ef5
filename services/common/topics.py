"""The topic spec (infra/topics.toml) and idempotent provisioning against a real broker."""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from .config import ROOT, Settings
from .kafka import admin_config

SPEC_PATH = ROOT / "infra" / "topics.toml"


class TopicMismatch(RuntimeError):
    """An existing topic differs from the spec (partitions or a pinned config)."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]
    replication: int = 1


def load_spec(settings: Settings, path: Path = SPEC_PATH) -> list[TopicSpec]:
    spec = tomllib.loads(path.read_text())
    if settings.kafka_mode not in spec["modes"]:
        raise ValueError(
            f"MARKETLOG_KAFKA_MODE={settings.kafka_mode!r}: one of {', '.join(spec['modes'])}"
        )
    mode = dict(spec["modes"][settings.kafka_mode])
    replication = int(mode.pop("replication.factor"))
    counts: dict[str, int] = {}
    topics = []
    for entry in spec["topic"]:
        role = entry["name"]
        parts = (
            counts[entry["partitions_of"]]
            if "partitions_of" in entry
            else int(entry.get("partitions", settings.partitions))
        )
        counts[role] = parts
        config = {**spec["kinds"][entry["kind"]], **mode}
        topics.append(TopicSpec(settings.topic(role), parts, config, replication))
    return topics


def _led(topic) -> bool:
    """The topic is known and every partition has a leader (a new topic gets one a moment on)."""
    if topic is None or topic.error is not None:
        return False
    return all(p.error is None and p.leader >= 0 for p in topic.partitions.values())


def wait_for_leaders(admin: AdminClient, names: list[str], timeout: float = 30.0) -> dict:
    """Topic metadata once every named topic shows up with a leader for each partition: a topic
    just created answers NOT_LEADER or is missing from metadata for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=10).topics
        missing = [name for name in names if not _led(meta.get(name))]
        if not missing:
            return meta
        if time.monotonic() > deadline:
            raise TopicMismatch(f"topics missing or without a leader: {', '.join(missing)}")
        time.sleep(0.1)


def _check(admin: AdminClient, specs: list[TopicSpec]) -> None:
    meta = wait_for_leaders(admin, [s.name for s in specs])
    problems = [
        f"{s.name}: {len(meta[s.name].partitions)} partitions, spec says {s.partitions}"
        for s in specs
        if len(meta[s.name].partitions) != s.partitions
    ]
    problems += [
        f"{s.name}: replication {len(p.replicas)}, spec says {s.replication}"
        for s in specs
        for p in list(meta[s.name].partitions.values())[:1]
        if len(p.replicas) != s.replication
    ]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    for spec, future in zip(specs, admin.describe_configs(resources).values(), strict=True):
        actual = {k: v.value for k, v in future.result().items()}
        problems += [
            f"{spec.name}: {k}={actual.get(k)}, spec says {v}"
            for k, v in spec.config.items()
            if actual.get(k) != v
        ]
    if problems:
        raise TopicMismatch("; ".join(problems))


def provision(settings: Settings, path: Path = SPEC_PATH) -> list[str]:
    """Create every missing topic, then check all of them against the spec. Returns the created."""
    admin = AdminClient(admin_config(settings))
    specs = load_spec(settings, path)
    existing = admin.list_topics(timeout=10).topics
    missing = [s for s in specs if s.name not in existing]
    created = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, config=s.config) for s in missing],
            operation_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:  # another process created it first: checked below
                if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:
                    raise
    _check(admin, specs)
    return created
