"""The projector's shell: Kafka in, one PostgreSQL transaction per batch out.

A plain consumer (read_committed, no Kafka commits: PostgreSQL holds the offsets) reads
account.events and market.events. Each batch (by count or time) is decoded, folded by
``rows.fold`` and written with its offsets by ``store.apply``; on assignment every partition is
sought to the offset stored in PostgreSQL. ``rebuild`` runs the same steps over every partition
from offset zero into a side schema and swaps it in once it reaches the end of the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import consumer_config
from services.common.metrics import ProcessorMetrics

from . import schema, store
from .rows import ACCOUNT, MARKET, Event, fold

log = logging.getLogger(__name__)

GROUP = "projector"
MAX_DB_FAILURES = 5  # consecutive failed batches before the process gives up


class ProjectorError(RuntimeError):
    """The projector cannot go on (undecodable record, database keeps failing)."""


class Projector:
    def __init__(
        self,
        settings: Settings,
        *,
        target: str = schema.LIVE,
        batch_records: int = 5000,
        batch_seconds: float = 0.01,
        notify: bool = True,
    ) -> None:
        self.settings = settings
        self.target = target
        self.batch_records = batch_records
        self.batch_seconds = batch_seconds
        self.notify = notify
        self.group = settings.topic_prefix + GROUP
        self.sources = {
            settings.topic("account.events"): ACCOUNT,
            settings.topic("market.events"): MARKET,
        }
        self.codec = Codec()
        self.metrics = ProcessorMetrics(GROUP)
        self.conn = schema.connect(settings.database_url, target)
        self.expected: dict[tuple[str, int], int] = {}  # next offset per owned partition
        self.consumer: Consumer | None = None
        self.failures = 0
        self._stopping = False

    def stop(self, *_: object) -> None:
        self._stopping = True

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        self.conn.close()

    # -- serve ----------------------------------------------------------------------------------
    def serve(self) -> None:
        """Consume as a member of the projector group until stop()."""
        applied = schema.migrate(self.conn, self.target)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        self.consumer = Consumer(consumer_config(self.settings, GROUP))
        self.consumer.subscribe(
            list(self.sources),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not self._stopping:
                records = self.consumer.consume(self.batch_records, self.batch_seconds)
                if records:
                    self.step(records)
        finally:
            self.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = store.stored_offsets(
            self.conn, self.group, [(p.topic, p.partition) for p in partitions]
        )
        self.expected.update(stored)
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in sorted(stored.items())])
        self.settings.mark_ready(GROUP)
        log.info("assigned %s", ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(stored.items())))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.expected.pop((p.topic, p.partition), None)

    # -- one batch -------------------------------------------------------------------------------
    def step(self, records: Sequence) -> int:
        """Apply one batch of consumed records; returns how many were applied."""
        events, spans = self._decode(records)
        if not spans:
            return 0
        started = time.perf_counter()
        batch = fold(events)
        try:
            fenced = store.apply(self.conn, self.group, spans, batch, notify=self.notify)
        except psycopg.Error as exc:
            self._db_failed(exc)
            return 0
        self.failures = 0
        if fenced is not None:
            log.warning("another writer moved the applied offsets; re-seeking")
            self.metrics.aborts.inc()
            self._seek(fenced)
            return 0
        for span in spans:
            self.expected[(span.topic, span.partition)] = span.next
        if batch.unknown:
            log.warning("%d records of types this version does not project", batch.unknown)
        self.metrics.batches.inc()
        self.metrics.records_in.inc(len(events))
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        return len(events)

    def _decode(self, records: Sequence) -> tuple[list[Event], list[store.Span]]:
        decode, sources, expected = self.codec.decode, self.sources, self.expected
        events: list[Event] = []
        ranges: dict[tuple[str, int], list[int]] = {}
        for record in records:
            if record.error() is not None:
                self._record_error(record.error())
                continue
            key = (record.topic(), record.partition())
            start = expected.get(key)
            offset = record.offset()
            if start is None or offset < start:  # revoked, or from before a seek
                continue
            try:
                name, value = decode(record.value())
            except Exception as exc:  # a decision we cannot read must not be skipped silently
                raise ProjectorError(f"{key[0]}[{key[1]}]@{offset}: {exc}") from exc
            events.append(Event(sources[key[0]], key[1], offset, name, value))
            span = ranges.get(key)
            if span is None:
                ranges[key] = [start, offset + 1]
            else:
                span[1] = offset + 1
        spans = [store.Span(t, p, a, b) for (t, p), (a, b) in ranges.items()]
        return events, spans

    def _record_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise ProjectorError(str(error))
        log.warning("consumer: %s", error)

    def _db_failed(self, exc: psycopg.Error) -> None:
        self.failures += 1
        self.metrics.aborts.inc()
        log.error("batch not applied (%d in a row): %s", self.failures, exc)
        if self.failures >= MAX_DB_FAILURES:
            raise ProjectorError(f"database keeps failing: {exc}") from exc
        time.sleep(0.5 * self.failures)
        if self.conn.closed or self.conn.broken:
            self.conn = schema.connect(self.settings.database_url, self.target)
        self._seek(store.stored_offsets(self.conn, self.group, list(self.expected)))

    def _seek(self, stored: dict[tuple[str, int], int]) -> None:
        """Continue every owned partition from the offsets PostgreSQL holds."""
        for key in list(self.expected):
            offset = stored.get(key)
            if offset is None:
                offset = store.stored_offsets(self.conn, self.group, [key])[key]
            self.expected[key] = offset
            self.consumer.seek(TopicPartition(key[0], key[1], offset))

    # -- rebuild --------------------------------------------------------------------------------
    def catch_up(self) -> int:
        """Apply every partition of both topics from the stored offsets to the end of the log."""
        self.consumer = Consumer(
            consumer_config(self.settings, None, **{"enable.partition.eof": True})
        )
        starts = []
        for topic in self.sources:
            meta = self.consumer.list_topics(topic, 10).topics[topic]
            starts += [(topic, p) for p in meta.partitions]
        stored = store.stored_offsets(self.conn, self.group, starts)
        self.expected.update(stored)
        self.consumer.assign(
            [TopicPartition(t, p, o or OFFSET_BEGINNING) for (t, p), o in stored.items()]
        )
        pending, applied = set(stored), 0
        while pending and not self._stopping:
            records = self.consumer.consume(self.batch_records, self.batch_seconds)
            for record in records:
                key = (record.topic(), record.partition())
                error = record.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(key)
                elif error is None:
                    pending.add(key)
            applied += self.step(records) if records else 0
        return applied


def rebuild(settings: Settings, *, batch_records: int = 20_000) -> int:
    """Replay both topics from offset zero into a fresh schema, then swap it in."""
    started = time.monotonic()
    projector = Projector(
        settings,
        target=schema.REBUILD,
        batch_records=batch_records,
        batch_seconds=0.05,
        notify=False,
    )
    try:
        schema.drop(projector.conn, schema.REBUILD)
        schema.migrate(projector.conn, schema.REBUILD)
        applied = projector.catch_up()
        schema.swap_in(projector.conn)
    finally:
        projector.close()
    log.info("rebuilt from %d records in %.1f s", applied, time.monotonic() - started)
    return applied
