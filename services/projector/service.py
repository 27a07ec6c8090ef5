"""The projector's shell: Kafka in, one PostgreSQL transaction per batch out.

A plain consumer (read_committed, no Kafka commits: PostgreSQL holds the offsets) reads
account.events, market.events and the analytics app's analytics.candles. Each batch (by count or
time) is decoded and folded by ``rows.fold`` on this thread, then written with its offsets by
``store.apply`` on a writer thread, so PostgreSQL works on one batch while Python prepares the
next. Batches are written in order; if one fails or is fenced, the writer drops everything queued
after it (each later batch would be fenced anyway: its start offsets were never stored) and the
consumer re-seeks every partition to the offsets PostgreSQL holds. On assignment partitions are
sought to those offsets too. ``rebuild`` runs the same steps over every partition from offset zero
into a side schema and swaps it in once it reaches the end of the log.

The tables are UNLOGGED (migration 0004): a PostgreSQL crash empties them, offsets included. A
projector with work to do finds out at its next batch (fenced: the stored offsets are not where
it started, so it re-seeks to them, i.e. to zero); an idle one checks every ``IDLE_CHECK_SECONDS``
that the stored offsets are still where it left them, so it replays even if no record arrives.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from services.common import progress
from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import FatalErrors, consumer_config
from services.common.metrics import DecisionCounter, ProcessorMetrics
from services.common.reader import EndWatch, end_offsets, end_reader

from . import schema, store
from .rows import ACCOUNT, ANALYTICS, MARKET, Batch, Event, fold

log = logging.getLogger(__name__)

GROUP = "projector"
MAX_DB_FAILURES = 5  # consecutive failed batches before the process gives up
IDLE_CHECK_SECONDS = 1.0  # idle: how often to check that the stored offsets are still ours
Key = tuple[str, int]  # (topic, partition)


class ProjectorError(RuntimeError):
    """The projector cannot go on (undecodable record, database keeps failing)."""


class Writer(threading.Thread):
    """Applies batches in order on its own connection. After a failure it skips what is queued
    until the consumer has re-sought and calls `resume`."""

    def __init__(self, settings: Settings, target: str, group: str, notify: bool) -> None:
        super().__init__(name="projector-writer", daemon=True)
        self.settings, self.target, self.group, self.notify = settings, target, group, notify
        self.jobs: queue.Queue = queue.Queue(maxsize=2)
        self.failure: str | None = None
        self.failures = 0
        self.metrics = ProcessorMetrics(GROUP)
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        conn = schema.connect(self.settings.database_url, self.target, prepare=True)
        # Rows and offsets commit or vanish together, so a commit lost in a database crash is
        # re-applied from the stored offsets: waiting for the WAL flush buys nothing here.
        conn.execute("SET synchronous_commit = off")
        return conn

    def submit(self, spans: list[store.Span], batch: Batch, records: int) -> None:
        self.jobs.put((spans, batch, records))

    def sync(self) -> None:
        """Return once everything submitted so far is written (or skipped)."""
        if not self.is_alive():
            return
        done = threading.Event()
        self.jobs.put(done)
        done.wait()

    def resume(self) -> None:
        self.failure = None

    def close(self) -> None:
        if self.is_alive():
            self.jobs.put(None)
            self.join(60)
        self.conn.close()

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if isinstance(job, threading.Event):
                job.set()
            elif self.failure is None:
                try:
                    self._write(*job)
                except Exception as exc:  # a bug: stop applying, let the consumer thread raise
                    log.exception("writer failed")
                    self.failure, self.failures = f"bug: {exc!r}", MAX_DB_FAILURES

    def _write(self, spans: list[store.Span], batch: Batch, records: int) -> None:
        started = time.perf_counter()
        try:
            if self.conn.broken:
                self.conn = self._connect()
            fenced = store.apply(self.conn, self.group, spans, batch, notify=self.notify)
        except psycopg.Error as exc:
            self.failures += 1
            self.failure = f"database: {exc}"
            self.metrics.aborts.inc()
            return
        if fenced is not None:
            self.failure = "another writer moved the applied offsets"
            self.metrics.aborts.inc()
            return
        self.failures = 0
        self.metrics.batches.inc()
        self.metrics.records_in.inc(records)
        elapsed = time.perf_counter() - started  # the batch's write is its commit here
        self.metrics.commit_seconds.observe(elapsed)
        self.metrics.commit_call_seconds.observe(elapsed)


class Projector:
    def __init__(
        self,
        settings: Settings,
        *,
        target: str = schema.LIVE,
        batch_records: int = 20_000,
        batch_seconds: float = 0.05,
        notify: bool = True,
    ) -> None:
        self.settings = settings
        self.target = target
        self.batch_records = batch_records
        self.batch_seconds = batch_seconds
        self.group = settings.topic_prefix + GROUP
        self.sources = {
            settings.topic("account.events"): ACCOUNT,
            settings.topic("market.events"): MARKET,
            settings.topic("analytics.candles"): ANALYTICS,
        }
        self.codec = Codec()  # compiled readers for the current schemas
        self.conn = schema.connect(settings.database_url, target)  # reads offsets
        self.writer = Writer(settings, target, self.group, notify)
        self.position: dict[Key, int] = {}  # next offset to fold, per owned partition
        self.consumer: Consumer | None = None
        self.submitted = 0  # records handed to the writer
        self.decisions = DecisionCounter()  # by record type, for the operator dashboard
        self.reseeks = 0  # times the writer failed and the consumer went back
        self._stopping = False
        self._idle_check = 0.0  # monotonic time of the next idle check

    def stop(self, *_: object) -> None:
        self._stopping = True

    def close(self) -> None:
        if self.consumer is not None:  # first: leaving the group syncs the writer (on_revoke)
            self.consumer.close()
            self.consumer = None
        self.writer.close()
        self.conn.close()

    # -- serve ----------------------------------------------------------------------------------
    def serve(self) -> None:
        """Consume as a member of the projector group until stop()."""
        try:
            applied = schema.migrate(self.conn, self.target)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ProjectorError(
                f"migrations pending and this role may not apply them ({exc}): run"
                " `python -m services.projector migrate` as the owner (migrator) first"
            ) from exc
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        self.writer.start()
        fatal = FatalErrors()
        self.consumer = Consumer(
            consumer_config(self.settings, GROUP, error_cb=fatal, **{"enable.partition.eof": True})
        )
        self.consumer.subscribe(
            list(self.sources),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not self._stopping:
                if fatal.error is not None:
                    raise ProjectorError(str(fatal.error))
                records = self.consumer.consume(self.batch_records, self.batch_seconds)
                if self.step(records) == 0 and not records:
                    self._check_idle()
            self.writer.sync()
            self._check_writer()
        finally:
            self.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.writer.sync()  # whatever was in flight is written before positions are re-read
        stored = self._stored_offsets([(p.topic, p.partition) for p in partitions])
        self.position.update(stored)
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in sorted(stored.items())])
        self.settings.mark_ready(GROUP)
        log.info("assigned %s", ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(stored.items())))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.writer.sync()  # finish what we folded while we still own it
        for p in partitions:
            self.position.pop((p.topic, p.partition), None)

    # -- one batch -------------------------------------------------------------------------------
    def step(self, records: Sequence) -> int:
        """Fold one batch of consumed records and hand it to the writer; returns its size."""
        if self._check_writer():
            return 0  # these records were fetched before the re-seek: they come again
        events, spans = self._decode(records)
        if not spans:
            return 0
        batch = fold(events)
        self.decisions.count(Counter(e.name for e in events))
        if batch.unknown:
            log.warning(
                "%d records not projected (types this version does not know, or day-trading"
                " input the ledger refused as bad_input)",
                batch.unknown,
            )
        self.writer.submit(spans, batch, len(events))
        for span in spans:
            self.position[(span.topic, span.partition)] = span.next
        self.submitted += len(events)
        return len(events)

    def _decode(self, records: Sequence) -> tuple[list[Event], list[store.Span]]:
        decode, sources, position = self.codec.decode, self.sources, self.position
        events: list[Event] = []
        ranges: dict[Key, list[int]] = {}
        for record in records:
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._reached_end(record, ranges)
                else:
                    self._record_error(error)
                continue
            key = (record.topic(), record.partition())
            start = position.get(key)
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

    def _reached_end(self, eof, ranges: dict[Key, list[int]]) -> None:
        """At the end of a partition the applied offset moves to the end itself: past the
        commit markers and aborted records after the last decision, which are offsets too. A
        reader waiting for an offset read off the log's end (the gateway at start) then sees it
        reached, instead of waiting for the next decision on that partition."""
        key = (eof.topic(), eof.partition())
        start = self.position.get(key)
        end = eof.offset()
        if start is None or end is None or end < 0:
            return
        span = ranges.get(key)
        if span is None:
            if end > start:
                ranges[key] = [start, end]
        elif end > span[1]:
            span[1] = end

    def _record_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise ProjectorError(str(error))
        log.warning("consumer: %s", error)

    def _check_writer(self) -> bool:
        """After a failed or fenced batch: drain, then continue from the stored offsets.
        Returns whether it re-sought."""
        if self.writer.failure is None:
            return False
        self.reseeks += 1
        self.writer.sync()
        log.warning("batch not applied (%s); re-seeking to the stored offsets", self.writer.failure)
        if self.writer.failures >= MAX_DB_FAILURES:
            raise ProjectorError(f"giving up after {self.writer.failures} failed batches")
        time.sleep(0.2 * self.writer.failures)
        try:
            stored = self._stored_offsets()
        except psycopg.OperationalError as exc:  # still down: try again at the next step
            self.writer.failures += 1  # the writer is idle: it skips jobs until resume()
            self.writer.failure = f"database: {exc}"
            return True
        self._seek(stored)
        self.writer.resume()
        return True

    def _stored_offsets(self, keys: list[Key] | None = None) -> dict[Key, int]:
        """The stored offsets of `keys` (default: the owned partitions), on a fresh connection
        if the database went away under this one (a restart: a connection only finds out when
        it is used)."""
        keys = list(self.position) if keys is None else keys
        try:
            return store.stored_offsets(self.conn, self.group, keys)
        except psycopg.OperationalError:
            if not self.conn.broken:
                raise
        self.conn = schema.connect(self.settings.database_url, self.target)
        return store.stored_offsets(self.conn, self.group, keys)

    def _seek(self, stored: dict[Key, int]) -> None:
        for key, offset in stored.items():
            self.position[key] = offset
            self.consumer.seek(TopicPartition(key[0], key[1], offset))

    def _check_idle(self) -> None:
        """Nothing to consume: once a second, check that the stored offsets are where this
        projector left them, with everything it submitted written. They are not after a
        PostgreSQL crash, which empties the unlogged tables and their offsets (then this
        re-seeks to zero and replays), or after a rebuild's swap (fencing would also catch that,
        but only at the next record)."""
        now = time.monotonic()
        if now < self._idle_check or not self.position:
            return
        self._idle_check = now + IDLE_CHECK_SECONDS
        self.writer.sync()
        if self._check_writer():
            return
        try:
            stored = self._stored_offsets()
        except psycopg.OperationalError as exc:  # down: the next check, or batch, tries again
            log.warning("cannot read the stored offsets: %s", exc)
            return
        moved = {k: (self.position[k], o) for k, o in stored.items() if o != self.position[k]}
        if moved:
            log.warning(
                "stored offsets moved under an idle projector (PostgreSQL crashed and emptied"
                " the unlogged tables, or a rebuild was swapped in); re-seeking: %s",
                ", ".join(f"{t}[{p}] {a}->{b}" for (t, p), (a, b) in sorted(moved.items())),
            )
            self.reseeks += 1
            self._seek(stored)

    # -- rebuild --------------------------------------------------------------------------------
    def catch_up(self, advance: Callable[[int], None] = lambda n: None) -> int:
        """Apply every partition of both topics from the stored offsets to the end of the log;
        `advance(n)` hears of each batch of n records (a progress bar)."""
        self.writer.start()
        self.consumer = end_reader(self.settings)
        keys = []
        for topic in self.sources:
            meta = self.consumer.list_topics(topic, 10).topics[topic]
            keys += [(topic, p) for p in meta.partitions]
        stored = store.stored_offsets(self.conn, self.group, keys)
        self.position.update(stored)
        self.consumer.assign(
            [TopicPartition(t, p, o or OFFSET_BEGINNING) for (t, p), o in stored.items()]
        )
        watch, reseeks = EndWatch(stored), self.reseeks
        while not self._stopping:
            if watch.done:  # every partition at its end: done once all of it is written
                self.writer.sync()
                self._check_writer()
                if self.reseeks == reseeks:
                    break
            if self.reseeks != reseeks:  # went back: every partition must reach its end again
                watch.reset()
                reseeks = self.reseeks
            advance(self.step(watch.poll(self.consumer, self.batch_records, self.batch_seconds)))
        if self._stopping:
            raise ProjectorError("stopped before reaching the end of the log")
        return self.submitted


def _total(settings: Settings, topics: list[str]) -> int:
    return sum(end_offsets(settings, topics).values())


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
        topics = list(projector.sources)
        with progress.counter("rebuild", lambda: _total(settings, topics)) as advance:
            applied = projector.catch_up(advance)
        schema.swap_in(projector.conn)
    finally:
        projector.close()
    log.info("rebuilt from %d records in %.1f s", applied, time.monotonic() - started)
    return applied
