"""EndWatch, the one place that knows when a read reached the end of its partitions."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.common import reader
from services.common.config import Settings
from services.common.reader import EndWatch


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, eof: bool = False) -> None:
        self._where = (topic, partition, offset)
        self._error = KafkaError(KafkaError._PARTITION_EOF) if eof else None

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def error(self) -> KafkaError | None:
        return self._error


class FakeConsumer:
    def __init__(self, *batches: list) -> None:
        self.batches = list(batches)

    def consume(self, num_messages: int, timeout: float) -> list:
        return self.batches.pop(0) if self.batches else []


def test_a_partition_ends_at_its_eof_offset_past_the_commit_marker():
    watch = EndWatch([("t", 0), ("t", 1)])
    consumer = FakeConsumer(
        [FakeMessage("t", 0, 0), FakeMessage("t", 0, 1), FakeMessage("t", 0, 3, eof=True)],
        [FakeMessage("t", 1, 0, eof=True)],
    )
    batch = watch.poll(consumer)
    assert len(batch) == 3  # the EOF event goes back to the caller too
    assert not watch.done and watch.ends == {("t", 0): 3}
    watch.poll(consumer)
    assert watch.done and watch.ends == {("t", 0): 3, ("t", 1): 0}


def test_reset_asks_for_every_end_again():
    watch = EndWatch([("t", 0)])
    watch.poll(FakeConsumer([FakeMessage("t", 0, 0, eof=True)]))
    assert watch.done
    watch.reset()
    assert not watch.done


def test_silence_raises_naming_the_partitions_that_never_ended():
    watch = EndWatch([("t", 0), ("t", 1)], idle_timeout=1.0)
    consumer = FakeConsumer([FakeMessage("t", 0, 0, eof=True)])
    watch.poll(consumer, wait=0.5)
    watch.poll(consumer, wait=0.5)
    with pytest.raises(TimeoutError, match=r"t\[1\]"):
        watch.poll(consumer, wait=0.5)


def test_records_reset_the_silence():
    watch = EndWatch([("t", 0)], idle_timeout=1.0)
    consumer = FakeConsumer([], [FakeMessage("t", 0, 0)], [], [FakeMessage("t", 0, 1, eof=True)])
    for _ in range(4):
        watch.poll(consumer, wait=0.5)
    assert watch.done


class AssignableConsumer(FakeConsumer):
    def list_topics(self, topic: str, timeout: float) -> None:
        self.listed = [*getattr(self, "listed", []), topic]

    def assign(self, partitions: list) -> None:
        self.assigned = partitions

    def close(self) -> None:
        self.closed = True


def test_records_that_share_a_batch_with_their_end_are_read(monkeypatch):
    consumer = AssignableConsumer(
        [FakeMessage("t", 0, 0), FakeMessage("t", 0, 1), FakeMessage("t", 0, 3, eof=True)]
    )
    monkeypatch.setattr(reader, "end_reader", lambda settings, committed, **extra: consumer)
    found = reader.read_to_end(Settings(), {("t", 0): 0})
    assert [m.offset() for m in found] == [0, 1]
    assert consumer.closed


def test_nothing_at_or_past_stop(monkeypatch):
    consumer = AssignableConsumer([FakeMessage("t", 0, 5), FakeMessage("t", 0, 7)])
    monkeypatch.setattr(reader, "end_reader", lambda settings, committed, **extra: consumer)
    found = reader.read_to_end(Settings(), {("t", 0): 5}, stop=7)
    assert [m.offset() for m in found] == [5]  # 6 is a commit marker: 7 ends the read


def test_a_stop_per_partition_and_the_leaders_asked_before_the_assignment(monkeypatch):
    consumer = AssignableConsumer(
        [FakeMessage("t", 0, 0), FakeMessage("t", 1, 0), FakeMessage("t", 0, 1)],
        [FakeMessage("t", 1, 1), FakeMessage("t", 1, 2, eof=True)],
    )
    monkeypatch.setattr(reader, "end_reader", lambda settings, committed, **extra: consumer)
    positions = {("t", 0): 0, ("t", 1): 0, ("t", 2): 4}
    found = reader.read_to_end(Settings(), positions, stop={("t", 0): 1, ("t", 2): 4})
    assert [(m.partition(), m.offset()) for m in found] == [(0, 0), (1, 0), (1, 1)]
    assert consumer.listed == ["t"]  # t[2] holds nothing before its stop: not assigned
    assert [(tp.partition, tp.offset) for tp in consumer.assigned] == [(0, 0), (1, 0)]


class SilentMetadata(AssignableConsumer):
    def list_topics(self, topic: str, timeout: float) -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))


def test_unanswered_leaders_leave_the_read_to_its_own_timeout(monkeypatch):
    consumer = SilentMetadata([FakeMessage("t", 0, 0), FakeMessage("t", 0, 1, eof=True)])
    monkeypatch.setattr(reader, "end_reader", lambda settings, committed, **extra: consumer)
    assert [m.offset() for m in reader.read_to_end(Settings(), {("t", 0): 0})] == [0]


class SettlingLeader:
    """A partition whose first answers are an error (a new topic's leader not there yet)."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.asked = 0

    def get_watermark_offsets(self, partition, timeout: float) -> tuple[int, int]:
        self.asked += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 0, 42


def test_an_end_is_asked_again_while_the_leader_settles(monkeypatch):
    monkeypatch.setattr(reader.time, "sleep", lambda seconds: None)
    broker = SettlingLeader(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
    assert reader.end_of(broker, TopicPartition("t", 0)) == 42
    assert broker.asked == 3


def test_other_errors_are_raised_at_once(monkeypatch):
    monkeypatch.setattr(reader.time, "sleep", lambda seconds: None)
    broker = SettlingLeader(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        reader.end_of(broker, TopicPartition("t", 0))
    assert broker.asked == 1


def test_a_leader_that_never_settles_is_raised_after_the_timeout(monkeypatch):
    monkeypatch.setattr(reader.time, "sleep", lambda seconds: None)
    broker = SettlingLeader(*[KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    with pytest.raises(KafkaException):
        reader.end_of(broker, TopicPartition("t", 0), timeout=-1.0)
    assert broker.asked == 1
