"""Reading partitions to their end: a processor's recovery, the determinism audits, the
projector's rebuild, tests and benchmarks all need "every record, as of now".

The end of a partition is where a read_committed consumer stops: its last stable offset. It is not
the last record's offset + 1: commit and abort markers (and aborted records) take offsets too, so
a transactional topic ends past its last readable record. librdkafka reports a partition at its
end with a partition-EOF event whose offset is that end; ``EndWatch`` follows those events,
``read_to_end`` is built on it, and ``end_offsets`` asks the broker for the same ends without
reading (ListOffsets with the consumer's isolation level: the last stable offset under
read_committed, the high watermark under read_uncommitted).

A read that hears nothing (no record, no end) for ``idle_timeout`` seconds raises TimeoutError
naming the partitions that never ended: a long replay is progress, a silent broker is not.

A read of an empty or caught-up partition takes tens of milliseconds, not a second (measured on a
loopback broker, 2026-12-07: 1.0 s before, 0.04-0.08 s after): its consumer learns the partitions'
leaders before it assigns them (else librdkafka retries the offset query of OFFSET_BEGINNING on a
500 ms timer), waits 10 ms per empty fetch rather than the services' 100 ms, and polls in short
steps (``consume`` blocks for its whole timeout unless its batch fills, end event or not).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from .config import Settings
from .kafka import consumer_config

Key = tuple[str, int]  # (topic, partition)
IDLE_TIMEOUT = 30.0
READ_WAIT = 0.05  # one poll of read_to_end: an end event waits at most this long to be seen


class EndWatch:
    """Which partitions of a consumer's assignment have not reached their end yet.

    ``poll`` consumes one batch, notes every end it reports (``ends``) and returns the batch
    unchanged, EOF events included, so a caller with its own loop (the projector's rebuild) keeps
    them; records and other errors are the caller's.
    """

    def __init__(self, keys: Iterable[Key], idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.keys = set(keys)
        self.pending = set(self.keys)
        self.ends: dict[Key, int] = {}
        self.idle_timeout = idle_timeout
        self._idle = 0.0

    @property
    def done(self) -> bool:
        return not self.pending

    def reset(self) -> None:
        """Every partition must reach its end again (after seeking back)."""
        self.pending = set(self.keys)

    def reached(self, key: Key) -> None:
        self.pending.discard(key)

    def poll(self, consumer: Consumer, max_records: int = 1000, wait: float = 0.5) -> list:
        batch = consumer.consume(max_records, wait)
        # idle time counts empty polls only: time the caller spends on a batch is not silence
        self._idle = 0.0 if batch else self._idle + wait
        if self.pending and self._idle >= self.idle_timeout:
            names = ", ".join(f"{t}[{p}]" for t, p in sorted(self.pending))
            raise TimeoutError(
                f"{names}: no record and no end for {self.idle_timeout:.0f} s while reading "
                "to the end"
            )
        for message in batch:
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                key = (message.topic(), message.partition())
                self.ends[key] = message.offset()
                self.pending.discard(key)
        return batch


def end_reader(settings: Settings, committed: bool = True, **extra: object) -> Consumer:
    """A group-less consumer that reports partition ends (read_committed unless told)."""
    isolation = "read_committed" if committed else "read_uncommitted"
    conf = {"enable.partition.eof": True, "isolation.level": isolation, **extra}
    return Consumer(consumer_config(settings, None, **conf))


def read_to_end(
    settings: Settings,
    positions: Mapping[Key, int],
    *,
    stop: int | Mapping[Key, int] | None = None,
    committed: bool = True,
    idle_timeout: float = IDLE_TIMEOUT,
) -> Iterator[Message]:
    """The records of each (topic, partition) from its position (an offset or OFFSET_BEGINNING)
    to its end as of the moment the read gets there, in offset order per partition; no record at
    or past `stop` (exclusive: one offset for every partition, or one per partition, a partition
    missing from it read to its end). committed=False reads what open and aborted transactions
    wrote too."""
    stops = dict.fromkeys(positions, stop) if not isinstance(stop, Mapping) else dict(stop)
    todo = {k: o for k, o in positions.items() if stops.get(k) is None or o < stops[k]}
    if not todo:
        return
    # short-lived: an empty fetch need not wait the services' 100 ms (consumer_config)
    consumer = end_reader(settings, committed, **{"fetch.wait.max.ms": 10})
    watch = EndWatch(todo, idle_timeout)
    try:
        for topic in sorted({t for t, _ in todo}):
            _learn_leaders(consumer, topic)
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in todo.items()])
        while not watch.done:
            for message in watch.poll(consumer, wait=READ_WAIT):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    continue
                key = (message.topic(), message.partition())
                end = stops.get(key)
                if end is not None and message.offset() + 1 >= end:
                    watch.reached(key)
                    if message.offset() >= end:
                        continue
                yield message
    finally:
        consumer.close()


def _learn_leaders(consumer: Consumer, topic: str) -> None:
    """The topic's leaders, known before the assignment (else the first offset query waits for
    librdkafka's 500 ms retry timer). Only a speed-up: a broker that does not answer now leaves
    the read to its own idle timeout, as without it."""
    with contextlib.suppress(KafkaException):
        consumer.list_topics(topic, 10)


def partitions_of(settings: Settings, topic: str) -> list[int]:
    consumer = Consumer(consumer_config(settings, None))
    try:
        return sorted(consumer.list_topics(topic, 10).topics[topic].partitions)
    finally:
        consumer.close()


def read_topic(
    settings: Settings, topic: str, *, committed: bool = True, idle_timeout: float = IDLE_TIMEOUT
) -> Iterator[Message]:
    """Every record of every partition of topic, from the beginning to its end as of now."""
    positions = {(topic, p): OFFSET_BEGINNING for p in partitions_of(settings, topic)}
    return read_to_end(settings, positions, committed=committed, idle_timeout=idle_timeout)


def total_offsets(settings: Settings, topic: str) -> int:
    """The sum of a topic's end offsets: at least its committed records (progress bars)."""
    return sum(end_offsets(settings, [topic]).values())


def end_offsets(
    settings: Settings, topics: Iterable[str], *, committed: bool = True
) -> dict[Key, int]:
    """The end offset of every partition of the topics, asked of the broker: the last stable
    offset (committed=True) or the high watermark."""
    consumer = end_reader(settings, committed)
    try:
        ends = {}
        for topic in topics:
            for p in consumer.list_topics(topic, 10).topics[topic].partitions:
                ends[(topic, p)] = end_of(consumer, TopicPartition(topic, p))
        return ends
    finally:
        consumer.close()


# A partition just created, or whose leader just moved, answers with these for a moment.
LEADER_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def end_of(consumer: Consumer, partition: TopicPartition, timeout: float = 30.0) -> int:
    """One partition's end, asked again while its leadership is still settling."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(partition, 10)[1]
        except KafkaException as exc:
            error = exc.args[0]
            settling = error.retriable() or error.code() in LEADER_MOVING
            if not settling or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
