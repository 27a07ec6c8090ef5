"""Provisioning from infra/topics.toml: idempotent, and it refuses a topic that differs."""

from __future__ import annotations

import dataclasses

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from services.common.topics import TopicMismatch, load_spec, provision
from tests.support import create_topics

pytestmark = pytest.mark.integration


def test_logs_keep_everything_and_snapshots_are_compacted(settings):
    assert provision(settings) == []  # the fixture provisioned already: nothing new
    admin = AdminClient({"bootstrap.servers": settings.kafka})
    specs = {s.name: s for s in load_spec(settings)}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in specs]
    configs = {
        r.name: {k: v.value for k, v in f.result().items()}
        for r, f in admin.describe_configs(resources).items()
    }
    for role in ("ledger.commands", "match.commands", "market.events", "account.events"):
        config = configs[settings.topic(role)]
        assert (config["cleanup.policy"], config["retention.ms"], config["retention.bytes"]) == (
            "delete",
            "-1",
            "-1",
        )
    for role in ("ledger.snapshots", "matcher.snapshots"):
        assert configs[settings.topic(role)]["cleanup.policy"] == "compact"
    meta = admin.list_topics(timeout=10).topics
    assert all(len(meta[name].partitions) == 4 for name in specs)


def test_a_topic_that_differs_from_the_spec_is_refused(settings):
    other = dataclasses.replace(settings, topic_prefix=settings.topic_prefix + "x.")
    create_topics(other, 2, other.topic("market.events"))  # wrong partition count and retention
    with pytest.raises(TopicMismatch, match=r"market\.events: 2 partitions, spec says 4"):
        provision(other)
