"""The exactly-once processor loop every stateful service runs (the imperative shell).

consume a batch -> apply the pure core -> produce its outputs -> send the input offsets to the
transaction -> commit. A batch closes on a record count or when its transaction may open
(``_next_batch``), whichever comes first.
Snapshots of a partition's state go to a compacted topic, tagged with the input offset they
reflect. One is taken right after a commit, so it is the state as of committed offsets; a forked
child serialises it (snapshotter.py) while the loop goes on, and the next transaction writes it.
A snapshot's offset is thus never ahead of the committed one, and restoring it then replaying
up to the committed offset gives the state the loop had. Each transaction also writes, beside its
outputs, the ``Position`` of every input partition it moved (key "position" on the snapshot
topic): the same offsets it commits for the group, in the log itself, for when the group's are
lost (ORPHAN_SECONDS).

On assignment a partition's state is rebuilt from its newest snapshot plus a silent replay of the
input from the snapshot's offset up to the committed offset (or its position, if further); then
the partition goes live. An abortable error aborts the transaction and rebuilds every partition
the same way (the state had already absorbed the aborted batch). A fatal error (e.g. a newer
instance fenced this one) ends the process with a non-zero status. SIGTERM and SIGINT finish the
current batch and stop cleanly.

A core must not raise on bad input: it turns it into a decision (a rejection) so the log moves
on. An exception from a core is a bug; the process stops before committing the batch.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from .codec import Codec
from .config import Settings
from .kafka import FatalErrors, consumer_config, producer_config
from .metrics import ProcessorMetrics
from .reader import read_to_end
from .snapshotter import Snapshotter

log = logging.getLogger(__name__)


class Output(NamedTuple):
    """One record to produce; partition None lets the key choose it."""

    topic: str
    key: str
    value: bytes
    partition: int | None = None


class PartitionState(Protocol):
    """A pure core's state for one input partition."""

    def apply(self, value: bytes) -> Iterable[Output]: ...

    def snapshot(self) -> bytes: ...


class Core(Protocol):
    """What a service plugs into the loop."""

    name: str  # consumer group, transactional id and metrics prefix
    input_topic: str
    snapshot_topic: str

    def fresh(self, partition: int, partitions: int) -> PartitionState: ...

    def restore(self, partition: int, partitions: int, state: bytes) -> PartitionState: ...


@dataclass
class _Live:
    state: PartitionState
    next_offset: int
    since_snapshot: int
    snapshot_at: float


# A transactional call that has not returned in this long ends the process (FatalError): found by
# bench/chaos.py, send_offsets_to_transaction without a timeout blocked for good after a broker
# restart left the group fencing this member. A new instance fences the open transaction and
# resumes from the committed offsets; a stuck one would hold back every read_committed reader.
TXN_CALL_SECONDS = 10.0
COMMIT_SECONDS = 60.0  # retriable commit failures retried this long
# A batch whose transaction is still open after this long is stuck: the broker aborted it after
# transaction.timeout.ms (15 s) anyway. Found by bench/chaos.py: after a broker restart
# send_offsets_to_transaction ignored its own timeout and blocked for minutes. A watchdog thread
# then ends the process (exit 70) so that its supervisor starts a fresh one.
WATCHDOG_SECONDS = 45.0
UNSTABLE = {KafkaError._TIMED_OUT, KafkaError.UNSTABLE_OFFSET_COMMIT}  # a committed-offset fetch
# Adding the offsets to the transaction, or fetching the committed ones, while the coordinator's
# broker is lost (bench/chaos.py --cluster: one broker of three killed) fails with these, neither
# fatal nor abortable: the call is made again (librdkafka finds the new coordinator) for a while
# (OFFSETS_SECONDS, COMMIT_SECONDS) instead of ending the process
COORDINATOR_LOST = {
    KafkaError._TRANSPORT,
    KafkaError.CONCURRENT_TRANSACTIONS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}
OFFSETS_SECONDS = 30.0  # under WATCHDOG_SECONDS
# Committed offsets still unstable after this long come from an orphaned pending commit, not from
# an open transaction: one can stay open transaction.timeout.ms (15 s) plus the broker's abort
# sweep (10 s, infra/kafka/*.properties). Found by bench/chaos.py after a broker restart: a pending
# transactional commit that no marker settled (a hanging transaction on __consumer_offsets, while
# the coordinator listed none open; docs/reliability.md) left the group's offsets unstable for
# good, and every new instance died waiting for them. The
# group's last stable offsets are then taken, and the log's own positions where they are further:
# the orphan may be the commit of a transaction whose outputs are in the log (seen: recovering
# from the stable offsets alone decided inputs twice). The first transaction then commits every
# partition's position over the orphan.
ORPHAN_SECONDS = 30.0
POSITION_KEY = "position"  # a Position's key on the snapshot topic (a snapshot's: its partition)


class FatalError(RuntimeError):
    """The processor cannot go on (fenced, or the producer is dead)."""


class Processor:
    def __init__(
        self,
        core: Core,
        settings: Settings,
        *,
        batch_records: int = 2000,
        commit_gap: float = 0.005,
        batch_interval: float = 0.0,
        snapshot_records: int = 50_000,
        snapshot_seconds: float = 30.0,
    ) -> None:
        self.core = core
        self.settings = settings
        self.batch_records = batch_records
        self.commit_gap = commit_gap
        self.batch_interval = batch_interval
        self._began_at = self._committed_at = self._open_since = 0.0
        self.snapshot_records = snapshot_records
        self.snapshot_seconds = snapshot_seconds
        self.codec = Codec()
        self.metrics = ProcessorMetrics(core.name)
        self.fatal = FatalErrors()
        self.consumer = Consumer(consumer_config(settings, core.name, error_cb=self.fatal))
        self.producer = Producer(producer_config(settings, f"{core.name}-{settings.instance}"))
        self.live: dict[int, _Live] = {}
        self.snapshotter = Snapshotter()
        self._snapshots: list[Output] = []  # serialised by the child, for the next transaction
        self._partitions = 0
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self, records: int | None = None) -> float:
        """Serve until stop() (SIGTERM, SIGINT). For benchmarks, `records`: stop too once that
        many more input records are committed, as the records_in counter reads through
        prometheus_client's registry (what a scrape sees). Returns the seconds from the first
        batch to the last commit, group join and recovery excluded (0 without a batch)."""
        handlers = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.producer.init_transactions(30)  # fences any older instance with our transactional id
        threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        self.consumer.subscribe(
            [self.core.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        target = None if records is None else self.metrics.total("records_in") + records
        first = last = 0.0
        try:
            while not self._stopping and not self._reached(target):
                if self.fatal.error is not None:  # reported only to error_cb
                    raise FatalError(str(self.fatal.error))
                batch = self._next_batch()
                self._snapshots += self.snapshotter.poll() or []
                if batch:
                    first = first or time.monotonic()
                    self._process(batch)
                    last = time.monotonic()
                elif self._snapshots:  # idle: the snapshot goes in a transaction of its own
                    self._process([])
            self._finish_snapshot()
        finally:
            self.snapshotter.cancel()
            self.consumer.close()
            self.producer.flush(10)
            for sig, handler in handlers.items():  # a benchmark goes on after its run
                signal.signal(sig, handler)
        return last - first

    def _reached(self, target: float | None) -> bool:
        return target is not None and self.metrics.total("records_in") >= target

    def _next_batch(self) -> list:
        """The next transaction's records. It opens commit_gap after the last commit (the
        coordinator is still writing that one's markers: a transaction begun sooner gets
        CONCURRENT_TRANSACTIONS and waits out a retry) and batch_interval after the last one
        began (under load the broker then sees a bounded transaction rate, with more records in
        each); what arrives before then joins it. An idle processor starts on the first record."""
        now = time.monotonic()
        opens = max(self._committed_at + self.commit_gap, self._began_at + self.batch_interval)
        if opens > now:
            return self.consumer.consume(self.batch_records, opens - now)
        records = self.consumer.consume(1, 0.1)
        if records and self.batch_records > 1:
            records += self.consumer.consume(self.batch_records - 1, 0)
        return records

    # -- one transaction ----------------------------------------------------------------------
    def _process(self, records: list) -> None:
        self._began_at = time.monotonic()
        self._open_since = self._began_at
        try:
            self._transact(records)
        finally:
            self._committed_at = time.monotonic()
            self._open_since = 0.0

    def _watchdog(self) -> None:
        while True:
            time.sleep(1.0)
            since = self._open_since
            if since and time.monotonic() - since > WATCHDOG_SECONDS:
                log.critical("a transaction open for %.0f s: ending the process", WATCHDOG_SECONDS)
                faulthandler.dump_traceback(all_threads=True)
                os._exit(70)

    def _transact(self, records: list) -> None:
        try:
            self.producer.begin_transaction()
            touched = self._apply_batch(records)
            self._write_positions(touched)
            written = self._write_snapshots()
            if not touched and not written:
                self.producer.abort_transaction()
                return
            # every partition's position, touched or not: it overwrites any orphaned pending
            # commit of this producer (ORPHAN_SECONDS) in the same stroke
            topic = self.core.input_topic
            offsets = [TopicPartition(topic, p, live.next_offset) for p, live in self.live.items()]
            if offsets:
                self._send_offsets(offsets)
            self._commit()
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or not error.txn_requires_abort():
                raise FatalError(str(error)) from exc
            log.warning("aborting batch: %s", error)
            self.metrics.aborts.inc()
            self.producer.abort_transaction()
            self._rebuild_all()
            return
        self.metrics.batches.inc()
        self.metrics.records_in.inc(len(records))
        self.metrics.commit_seconds.observe(time.monotonic() - self._began_at)
        self._start_snapshot_if_due()

    def _apply_batch(self, records: list) -> set[int]:
        touched: set[int] = set()
        produced = 0
        for record in records:
            error = record.error()
            if error is not None:  # librdkafka retries transient errors itself
                if error.fatal():
                    raise FatalError(str(error))
                log.warning("consumer: %s", error)
                continue
            partition = record.partition()
            live = self.live.get(partition)
            if live is None:  # revoked while the batch was in flight
                continue
            for out in live.state.apply(record.value()):
                self._produce(out)
                produced += 1
            live.next_offset = record.offset() + 1
            live.since_snapshot += 1
            touched.add(partition)
        self.metrics.records_out.inc(produced)
        return touched

    def _produce(self, out: Output) -> None:
        while True:
            try:
                if out.partition is None:
                    self.producer.produce(out.topic, out.value, out.key)
                else:
                    self.producer.produce(out.topic, out.value, out.key, partition=out.partition)
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self.producer.poll(0.05)

    def _send_offsets(self, offsets: list[TopicPartition]) -> None:
        deadline = time.monotonic() + OFFSETS_SECONDS
        while True:
            try:
                self._send_offsets_once(offsets)
                return
            except KafkaException as exc:
                error = exc.args[0]
                again = error.retriable() or error.code() in COORDINATOR_LOST
                if error.fatal() or error.txn_requires_abort() or not again:
                    raise
                if time.monotonic() > deadline:
                    raise
                log.warning("adding the offsets retried: %s", error)
                time.sleep(0.2)

    def _send_offsets_once(self, offsets: list[TopicPartition]) -> None:
        self.producer.send_offsets_to_transaction(
            offsets, self.consumer.consumer_group_metadata(), TXN_CALL_SECONDS
        )

    def _commit(self) -> None:
        started = time.monotonic()
        deadline = started + COMMIT_SECONDS
        while True:
            try:
                self.producer.commit_transaction(TXN_CALL_SECONDS)
                self.metrics.commit_call_seconds.observe(time.monotonic() - started)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or time.monotonic() > deadline:
                    raise
                log.warning("commit retried: %s", exc.args[0])

    def _start_snapshot_if_due(self) -> None:
        """After a commit: fork a child to serialise every partition that is due, as of the
        offsets just committed (one child at a time; a partition due meanwhile waits for it)."""
        if self.snapshotter.busy:
            return
        now = time.monotonic()
        due = [
            (partition, live)
            for partition, live in self.live.items()
            if live.since_snapshot >= self.snapshot_records
            or (live.since_snapshot and now - live.snapshot_at >= self.snapshot_seconds)
        ]
        if not due:
            return
        for _, live in due:
            live.since_snapshot, live.snapshot_at = 0, now
        # the child sees the state and offsets as they are now, whatever the loop does next
        self.snapshotter.start(lambda: [self.snapshot_record(p, live) for p, live in due])

    def _write_positions(self, touched: set[int]) -> None:
        for partition in touched:
            offset = self.live[partition].next_offset
            value = self.codec.encode(
                "marketlog.Position", {"partition": partition, "offset": offset}
            )
            self._produce(Output(self.core.snapshot_topic, POSITION_KEY, value, partition))

    def _write_snapshots(self) -> int:
        """Produce the child's snapshots into the open transaction; a partition revoked since
        is skipped (its new owner snapshots it). Lost with an aborted transaction, and then
        simply taken again when next due."""
        ready, self._snapshots = self._snapshots, []
        written = 0
        for out in ready:
            if out.partition in self.live:
                self._produce(out)
                written += 1
        self.metrics.snapshots.inc(written)
        return written

    def _finish_snapshot(self) -> None:
        """On a clean stop: wait for a running child and commit its snapshot."""
        self._snapshots += self.snapshotter.wait(TXN_CALL_SECONDS) or []
        if self._snapshots:
            self._process([])

    def snapshot_record(self, partition: int, live: _Live) -> Output:
        state = zlib.compress(live.state.snapshot(), 1)
        value = self.codec.encode(
            "marketlog.Snapshot",
            {"partition": partition, "offset": live.next_offset, "state": state},
        )
        return Output(self.core.snapshot_topic, str(partition), value, partition)

    # -- assignment and recovery --------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Metadata through the producer, not the consumer whose callback this is: a blocking call
        # on the same handle inside its callback (list_topics) clears confluent-kafka's per-handle
        # call state, and the next callback of the same consume() (a second rebalance queued
        # while this one replays) aborted the process (CallState_get: cs != NULL; bench.scale).
        topic = self.core.input_topic
        self._partitions = len(self.producer.list_topics(topic, 10).topics[topic].partitions)
        recovered = self._recover([tp.partition for tp in partitions])
        self.live.update(recovered)
        consumer.assign(
            [TopicPartition(topic, p, live.next_offset) for p, live in recovered.items()]
        )
        self.settings.mark_ready(self.core.name)
        log.info("%s live on partitions %s", self.core.name, sorted(self.live))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.live.pop(tp.partition, None)

    def _rebuild_all(self) -> None:
        self.live.update(self._recover(list(self.live)))
        for partition, live in self.live.items():
            self.consumer.seek(TopicPartition(self.core.input_topic, partition, live.next_offset))

    def _recover(self, partitions: list[int]) -> dict[int, _Live]:
        """Every partition's state at its committed offset. One read of the snapshots, one fetch
        of the committed offsets and one replay serve them all: each read costs a consumer and
        its round trips (partition after partition, 1 s each before 2026-12-07)."""
        if not partitions:
            return {}
        # the offsets first: a transaction they wait out may still write positions
        committed = self._committed(partitions)
        snapshots, positions = self._read_snapshots(partitions)
        states: dict[int, PartitionState] = {}
        starts: dict[int, int] = {}
        for partition in partitions:
            snapshot = snapshots.get(partition)
            if snapshot is None:
                states[partition] = self.core.fresh(partition, self._partitions)
                starts[partition] = 0
            else:
                raw = zlib.decompress(snapshot["state"])
                states[partition] = self.core.restore(partition, self._partitions, raw)
                starts[partition] = snapshot["offset"]
        ends = {p: max(committed[p], starts[p], positions.get(p, 0)) for p in partitions}
        for p in partitions:
            if positions.get(p, 0) > max(committed[p], starts[p]):
                log.warning(
                    "%s partition %d: the log's position %d is past the committed offset %d "
                    "(an orphaned pending commit): recovering to the position",
                    self.core.name,
                    p,
                    positions[p],
                    committed[p],
                )
        replayed = self._replay(states, starts, ends)
        now = time.monotonic()
        for p in partitions:
            log.info(
                "%s partition %d: snapshot@%s, replayed %d records to offset %d",
                self.core.name,
                p,
                starts[p] if p in snapshots else "none",
                replayed[p],
                ends[p],
            )
        return {p: _Live(states[p], ends[p], ends[p] - starts[p], now) for p in partitions}

    def _committed(self, partitions: list[int]) -> dict[int, int]:
        """The group's committed offset of each input partition. Taken over from an instance that
        died mid-transaction, it stays unstable until the broker aborts that transaction
        (transaction.timeout.ms, services/common/kafka.py): wait for it, a while. Unstable past
        ORPHAN_SECONDS, no transaction holds it: the last stable offsets are taken."""
        started = time.monotonic()
        asked = [TopicPartition(self.core.input_topic, p) for p in partitions]
        while True:
            try:
                return _offsets(self.consumer.committed(asked, TXN_CALL_SECONDS))
            except KafkaException as exc:
                error = exc.args[0]
                waited = time.monotonic() - started
                if error.code() in UNSTABLE and waited > ORPHAN_SECONDS:
                    return self._last_stable(asked, error)
                waiting = error.retriable() or error.code() in UNSTABLE | COORDINATOR_LOST
                if not waiting or waited > COMMIT_SECONDS:
                    raise
                log.info("partitions %s: committed offsets not stable yet (%s)", partitions, error)

    def _last_stable(self, asked: list[TopicPartition], error: KafkaError) -> dict[int, int]:
        """The group's committed offsets, pending commits left out: a read_uncommitted consumer
        does not ask for stable offsets (KIP-447's require_stable goes with read_committed)."""
        log.warning(
            "%s: committed offsets unstable for %.0f s (%s): an orphaned pending commit; "
            "recovering from the last stable ones",
            self.core.name,
            ORPHAN_SECONDS,
            error,
        )
        conf = consumer_config(
            self.settings, self.core.name, **{"isolation.level": "read_uncommitted"}
        )
        conf.pop("group.instance.id")  # it never joins: only asks
        reader = Consumer(conf)
        try:
            return _offsets(reader.committed(asked, TXN_CALL_SECONDS))
        finally:
            reader.close()

    def _read_snapshots(self, partitions: list[int]) -> tuple[dict[int, dict], dict[int, int]]:
        """The newest snapshot of each partition that has one, and its newest position."""
        topic = self.core.snapshot_topic
        latest: dict[int, bytes] = {}
        positions: dict[int, bytes] = {}
        for record in read_to_end(
            self.settings, {(topic, p): OFFSET_BEGINNING for p in partitions}
        ):
            found = positions if record.key() == POSITION_KEY.encode() else latest
            found[record.partition()] = record.value()
        snapshots = {p: self.codec.decode(value)[1] for p, value in latest.items()}
        return snapshots, {p: self.codec.decode(v)[1]["offset"] for p, v in positions.items()}

    def _replay(
        self, states: dict[int, PartitionState], starts: dict[int, int], ends: dict[int, int]
    ) -> dict[int, int]:
        """Apply input records in [start, end) of each partition without producing: they were
        produced before. Returns the count replayed per partition."""
        topic = self.core.input_topic
        count = dict.fromkeys(states, 0)
        positions = {(topic, p): starts[p] for p in states}
        stops = {(topic, p): ends[p] for p in states}
        for record in read_to_end(self.settings, positions, stop=stops):
            partition = record.partition()
            for _ in states[partition].apply(record.value()):
                pass
            count[partition] += 1
        return count


def _offsets(found: list[TopicPartition]) -> dict[int, int]:
    """Committed offsets by partition; one partition's error fails the whole fetch."""
    for tp in found:
        if tp.error is not None:
            raise KafkaException(tp.error)
    return {tp.partition: tp.offset for tp in found}
