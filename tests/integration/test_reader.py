"""read_to_end and end_offsets on the real broker: the end of a transactional partition lies past
its commit marker, and under read_committed an open transaction's records are not there yet."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, Producer

from services.common.kafka import producer_config
from services.common.reader import end_offsets, read_to_end, read_topic
from tests.support import create_topics

pytestmark = pytest.mark.integration


def test_the_end_is_past_the_marker_and_before_an_open_transaction(settings):
    topic = settings.topic("reader.test")
    create_topics(settings, 1, topic)
    producer = Producer(producer_config(settings, "reader-test"))
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, b"%d" % i, "k", partition=0)
    producer.commit_transaction(30)  # offsets 0-4, the commit marker at 5
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, b"open %d" % i, "k", partition=0)
    producer.flush(10)  # offsets 6-8, in a transaction left open

    key = (topic, 0)
    assert end_offsets(settings, [topic]) == {key: 6}  # the last stable offset
    assert end_offsets(settings, [topic], committed=False) == {key: 9}  # the high watermark
    assert [r.value() for r in read_topic(settings, topic)] == [b"%d" % i for i in range(5)]
    assert len(list(read_topic(settings, topic, committed=False))) == 8
    stopped = read_to_end(settings, {key: OFFSET_BEGINNING}, stop=3)
    assert [r.offset() for r in stopped] == [0, 1, 2]
    assert list(read_to_end(settings, {key: 4}, stop=4)) == []

    producer.commit_transaction(30)
    assert end_offsets(settings, [topic]) == {key: 10}
    assert len(list(read_to_end(settings, {key: 2}))) == 6
