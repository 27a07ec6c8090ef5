"""An L3 replica of every book from market.events on Kafka (read_committed, every partition, from
the beginning: the log is the snapshot). A gap in a symbol's sequence (a lost record) resets the
books of that partition and reads it again from the beginning."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from services.common.codec import Codec, CodecError
from services.common.config import Settings
from services.common.kafka import consumer_config

from .book import Gap, L3Book, Tally


class L3Replica:
    def __init__(self, settings: Settings, symbols: set[str] | None = None, lose: int = 0) -> None:
        self.topic = settings.topic("market.events")
        self.symbols = symbols  # None: every symbol
        self.codec = Codec()
        self.consumer = Consumer(consumer_config(settings, None))
        self.books: dict[str, L3Book] = {}
        self.partition_of: dict[str, int] = {}
        self.tallies: dict[str, Tally] = {}
        self.gaps = self.resyncs = self.records = 0
        self._lose = lose  # fault injection for tests: drop the lose-th event record once
        self._reset: set[int] = set()  # partitions sought back: the rest of the batch is stale

    def start(self) -> None:
        partitions = self.consumer.list_topics(self.topic, 10).topics[self.topic].partitions
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])

    def run(self, duration: float | None = None, idle: float | None = None) -> None:
        """Follow the log until ``duration`` seconds have passed or nothing came for ``idle``."""
        began = heard = time.monotonic()
        while True:
            now = time.monotonic()
            if duration is not None and now - began >= duration:
                return
            if idle is not None and now - heard >= idle:
                return
            batch = self.consumer.consume(1000, 0.2)
            if any(m.error() is None for m in batch):
                heard = time.monotonic()
            self._reset = set()
            for message in batch:
                if message.partition() not in self._reset:
                    self._take(message)

    def _take(self, message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"{self.topic}: {error}")
            return
        key = (message.key() or b"").decode(errors="replace")
        if self.symbols is not None and key not in self.symbols:
            return
        try:
            name, record = self.codec.decode(message.value())
        except CodecError:
            return
        self.records += 1
        if 0 < self._lose <= self.records and not name.endswith(".BookChecksum"):
            self._lose = 0
            return  # lost on purpose (an event: a lost checksum only means one check fewer)
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = L3Book(key)
            self.partition_of[key] = message.partition()
            self.tallies[key] = Tally()
        try:
            check = book.apply(name, record)
        except Gap:
            self.gaps += 1
            self._resync(message.partition())
            return
        if check is not None:
            self.tallies[key].note(check)

    def _resync(self, partition: int) -> None:
        """Forget the partition's books and read it again from the beginning."""
        self.resyncs += 1
        self._reset.add(partition)
        for symbol in [s for s, p in self.partition_of.items() if p == partition]:
            self.books[symbol] = L3Book(symbol)
        self.consumer.seek(TopicPartition(self.topic, partition, OFFSET_BEGINNING))

    def close(self) -> None:
        self.consumer.close()

    def summary(self) -> dict[str, Any]:
        return {
            "replica": "L3",
            "source": "kafka",
            "records": self.records,
            "gaps": self.gaps,
            "resyncs": self.resyncs,
            "books": {
                s: self.tallies[s].summary(b.seq, b.levels.checksum())
                for s, b in sorted(self.books.items())
            },
        }
