"""An in-memory Kafka log: topics of partitions, each an append-only list of keyed records.

A record's partition is chosen from its key as Kafka's default partitioner (and the product's
``murmur2_random``, services/common/kafka.py) chooses it: murmur2 of the key's UTF-8 bytes,
made positive, modulo the partition count. Every record also carries a global append stamp (so a
topic can be read back in the order it was written, as a single producer would have sent it) and
the input record whose processing produced it (so a replay can be compared output by output).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

Cause = tuple[str, int, int]  # (input topic, partition, offset)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=65536)  # keys repeat (accounts, symbols); murmur2 in Python is not cheap
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Record(NamedTuple):
    key: str
    value: bytes
    stamp: int  # global append order across the whole log
    cause: Cause | None  # the input record whose processing appended it (None: a gateway's)


class Partition:
    """One partition: records from offset ``start`` on (earlier ones may have been trimmed)."""

    __slots__ = ("records", "start")

    def __init__(self) -> None:
        self.start = 0
        self.records: list[Record] = []

    @property
    def end(self) -> int:
        return self.start + len(self.records)

    def read(self, start: int, end: int | None = None) -> list[Record]:
        if start < self.start:
            raise ValueError(f"offset {start} was trimmed (the partition starts at {self.start})")
        stop = None if end is None else end - self.start
        return self.records[start - self.start : stop]

    def trim(self, before: int) -> None:
        """Forget records below an offset (memory for long histories); offsets stay."""
        drop = max(0, min(before, self.end) - self.start)
        del self.records[:drop]
        self.start += drop


class Log:
    """Named topics of partitions. Appends are immediately visible: transactions are the
    runner's business (it appends a batch's outputs only when the batch commits)."""

    def __init__(self) -> None:
        self.topics: dict[str, list[Partition]] = {}
        self.stamp = 0

    def create(self, topic: str, partitions: int) -> None:
        if topic in self.topics:
            raise ValueError(f"topic {topic} exists")
        self.topics[topic] = [Partition() for _ in range(partitions)]

    def partitions(self, topic: str) -> int:
        return len(self.topics[topic])

    def partition(self, topic: str, partition: int) -> Partition:
        return self.topics[topic][partition]

    def append(
        self,
        topic: str,
        key: str,
        value: bytes,
        partition: int | None = None,
        cause: Cause | None = None,
    ) -> tuple[int, int]:
        """Append one record (to the key's partition unless one is given): (partition, offset)."""
        parts = self.topics[topic]
        p = partition_for(key, len(parts)) if partition is None else partition
        self.stamp += 1
        target = parts[p]
        target.records.append(Record(key, value, self.stamp, cause))
        return p, target.end - 1

    def end(self, topic: str, partition: int) -> int:
        return self.topics[topic][partition].end

    def read(self, topic: str, partition: int, start: int = 0, end: int | None = None):
        return self.topics[topic][partition].read(start, end)

    def in_order(self, topic: str, since: dict[int, int] | None = None) -> Iterator[tuple]:
        """(partition, offset, record) of every partition from `since` (default: its start), in
        the order they were appended."""
        since = since or {}

        def numbered(p: int, part: Partition) -> Iterator[tuple[int, int, int, Record]]:
            first = max(since.get(p, part.start), part.start)
            for i, record in enumerate(part.read(first), first):
                yield record.stamp, p, i, record

        streams = [numbered(p, part) for p, part in enumerate(self.topics[topic])]
        for _, p, offset, record in heapq.merge(*streams):
            yield p, offset, record
