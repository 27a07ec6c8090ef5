"""The exactly-once loop on the real broker: visibility, aborts, and kill -9 recovery."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import zlib
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from services.common.codec import Codec
from services.common.processor import Processor
from tests.integration import backlog
from tests.integration.toy_processor import RunningTotal, ToyCore
from tests.support import create_topics, read_all, settings_env, wait_until

pytestmark = pytest.mark.integration
PARTITIONS = 4
CODEC = Codec()


@pytest.fixture
def toy(settings):
    create_topics(settings, PARTITIONS, settings.topic("toy.in"), settings.topic("toy.out"))
    create_topics(settings, PARTITIONS, settings.topic("toy.snapshots"), compacted=True)
    return ToyCore(settings)


def produce_inputs(settings, toy, values, *, pause_every=0, pause=0.0):
    producer = Producer({"bootstrap.servers": settings.kafka, "partitioner": "murmur2_random"})
    for i, value in enumerate(values):
        producer.produce(toy.input_topic, str(value).encode(), str(i))
        if pause_every and i % pause_every == 0:
            producer.flush()
            time.sleep(pause)
    producer.flush()


def assert_exactly_once(settings, toy):
    """Per partition, outputs are 1..n with the running totals of the inputs, once each."""
    inputs = defaultdict(list)
    for record in read_all(settings, toy.input_topic):
        inputs[record.partition()].append(int(record.value()))
    outputs = defaultdict(list)
    for record in read_all(settings, toy.output_topic):
        outputs[record.partition()].append(record.value().decode())
    for partition, values in inputs.items():
        expected, total = [], 0
        for count, value in enumerate(values, 1):
            total += value
            expected.append(f"{count},{total}")
        assert outputs[partition] == expected, f"partition {partition}"
    return sum(len(v) for v in outputs.values())


def snapshots(settings, toy) -> list[dict]:
    """The toy's snapshots; each transaction's Position beside them left out."""
    decoded = [CODEC.decode(r.value()) for r in read_all(settings, toy.snapshot_topic)]
    return [value for kind, value in decoded if kind == "marketlog.Snapshot"]


def start_in_thread(processor):
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    return thread


def stop_thread(processor, thread):
    processor.stop()
    thread.join(30)
    assert not thread.is_alive()


def test_outputs_are_invisible_until_commit(settings, toy, monkeypatch):
    processor = Processor(toy, settings, batch_records=50)
    monkeypatch.setattr("signal.signal", lambda *a: None)  # not the main thread
    in_commit, release = threading.Event(), threading.Event()
    real_commit = processor._commit

    def held_commit():
        in_commit.set()
        assert release.wait(60)
        real_commit()

    processor._commit = held_commit
    produce_inputs(settings, toy, range(10))
    thread = start_in_thread(processor)
    assert in_commit.wait(60)
    uncommitted = read_all(settings, toy.output_topic, committed=False)
    assert len(uncommitted) > 0
    assert read_all(settings, toy.output_topic) == []
    release.set()
    wait_until(lambda: len(read_all(settings, toy.output_topic)) == 10, 30, "committed outputs")
    stop_thread(processor, thread)
    assert assert_exactly_once(settings, toy) == 10


def test_aborted_batch_leaves_no_trace(settings, toy, monkeypatch):
    processor = Processor(toy, settings, batch_records=25, snapshot_records=10)
    monkeypatch.setattr("signal.signal", lambda *a: None)
    real_commit, failures = processor._commit, [3]

    def flaky_commit():  # the third and every fourth commit after it abort
        failures[0] -= 1
        if failures[0] <= 0 and failures[0] % 4 == 0:
            # the batch's outputs reach the broker first (an abort purges unsent ones)
            processor.producer.flush(10)
            raise KafkaException(KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True))
        real_commit()

    processor._commit = flaky_commit
    produce_inputs(settings, toy, range(1, 301))
    thread = start_in_thread(processor)
    wait_until(lambda: len(read_all(settings, toy.output_topic)) >= 300, 60, "all outputs")
    stop_thread(processor, thread)
    assert processor.metrics.aborts._value.get() >= 2
    assert assert_exactly_once(settings, toy) == 300
    # the aborted outputs are in the log, but only a read_uncommitted reader sees them
    assert len(read_all(settings, toy.output_topic, committed=False)) > 300


def test_a_lost_transaction_coordinator_is_retried_not_fatal(settings, toy, monkeypatch):
    # the errors adding the offsets met when the coordinator broker of a cluster was killed
    # (bench/chaos.py --cluster): retried in the same transaction, nothing aborted or repeated
    processor = Processor(toy, settings, batch_records=25)
    monkeypatch.setattr("signal.signal", lambda *a: None)
    real_send, calls = processor._send_offsets_once, [0]
    codes = [KafkaError._TRANSPORT, KafkaError.CONCURRENT_TRANSACTIONS]

    def lost_coordinator(offsets):
        calls[0] += 1
        if calls[0] % 3:  # two of every three calls fail
            raise KafkaException(KafkaError(codes[calls[0] % 3 - 1], "injected"))
        real_send(offsets)

    processor._send_offsets_once = lost_coordinator
    aborts_before = processor.metrics.aborts._value.get()  # the counter is per process
    produce_inputs(settings, toy, range(1, 101))
    thread = start_in_thread(processor)
    wait_until(lambda: len(read_all(settings, toy.output_topic)) >= 100, 60, "all outputs")
    stop_thread(processor, thread)
    assert calls[0] >= 3 and processor.metrics.aborts._value.get() == aborts_before
    assert assert_exactly_once(settings, toy) == 100


def test_offsets_unstable_for_good_are_recovered_from_the_log_positions(settings, toy, monkeypatch):
    """A pending offset commit that never settles (found by bench/chaos.py after a broker
    restart: the group's offsets stayed unstable for good, and the last stable ones were behind
    what the log held) must neither stop recovery nor decide inputs twice. Here another producer
    first commits offset 0 for the group (the stable offsets fall behind the outputs), then holds
    a commit of offset 10**6 open while the processor recovers: it resumes at the positions its
    own transactions wrote."""
    monkeypatch.setattr("signal.signal", lambda *a: None)
    monkeypatch.setattr("services.common.processor.ORPHAN_SECONDS", 1.0)
    monkeypatch.setattr("services.common.processor.TXN_CALL_SECONDS", 3.0)
    first = Processor(toy, settings, batch_records=25, snapshot_seconds=3600)
    produce_inputs(settings, toy, range(1, 41))
    thread = start_in_thread(first)
    wait_until(lambda: len(read_all(settings, toy.output_topic)) >= 40, 60, "first outputs")
    stop_thread(first, thread)

    group = Consumer(
        {"bootstrap.servers": settings.kafka, "group.id": settings.topic_prefix + toy.name}
    )
    intruder = Producer(
        {
            "bootstrap.servers": settings.kafka,
            "transactional.id": settings.topic_prefix + "intruder",
            "transaction.timeout.ms": 120_000,
        }
    )
    intruder.init_transactions(30)

    def commit_for_the_group(offset: int) -> None:
        intruder.begin_transaction()
        offsets = [TopicPartition(toy.input_topic, p, offset) for p in range(PARTITIONS)]
        intruder.send_offsets_to_transaction(offsets, group.consumer_group_metadata(), 30)

    commit_for_the_group(0)
    intruder.commit_transaction(30)
    commit_for_the_group(10**6)  # left open
    try:
        produce_inputs(settings, toy, range(41, 81))
        second = Processor(toy, settings, batch_records=25)
        thread = start_in_thread(second)
        wait_until(lambda: len(read_all(settings, toy.output_topic)) >= 80, 90, "later outputs")
        stop_thread(second, thread)
    finally:
        intruder.abort_transaction(30)
        group.close()
    assert assert_exactly_once(settings, toy) == 80


def test_transactions_open_at_most_once_per_batch_interval(settings, toy, monkeypatch):
    processor = Processor(toy, settings, batch_interval=1.0)
    monkeypatch.setattr("signal.signal", lambda *a: None)
    thread = start_in_thread(processor)
    produce_inputs(settings, toy, [0])  # the loop is fetching once this one is out
    wait_until(lambda: len(read_all(settings, toy.output_topic)) == 1, 60, "the first output")
    batches_before = processor.metrics.batches._value.get()  # the counter is per process
    started = time.monotonic()
    produce_inputs(settings, toy, range(1, 31), pause_every=1, pause=0.05)  # a trickle, ~1.5 s
    trickle = time.monotonic() - started
    wait_until(lambda: len(read_all(settings, toy.output_topic)) == 31, 60, "all outputs")
    stop_thread(processor, thread)
    assert assert_exactly_once(settings, toy) == 31
    # a transaction per record without the interval; with it, one per second of the trickle
    # (plus the one the last records opened after it)
    batches = processor.metrics.batches._value.get() - batches_before
    assert batches <= int(trickle) + 2, (batches, trickle)


def test_a_snapshot_is_serialised_aside_while_the_loop_goes_on(
    settings, toy, monkeypatch, tmp_path
):
    """The snapshot child is held (the toy's gate) while more input is committed; once let go,
    its snapshots reach the topic on their own, each the state as of its offset."""
    gate = tmp_path / "gate"
    monkeypatch.setattr(RunningTotal, "gate", str(gate))
    monkeypatch.setattr("signal.signal", lambda *a: None)
    processor = Processor(toy, settings, batch_records=20, snapshot_records=10)
    thread = start_in_thread(processor)
    values = list(range(1, 101))
    produce_inputs(settings, toy, values[:60])
    wait_until(lambda: len(read_all(settings, toy.output_topic)) == 60, 60, "the first outputs")
    wait_until(lambda: processor.snapshotter.busy, 30, "a snapshot child")
    produce_inputs(settings, toy, values[60:])  # committed while the child waits at the gate
    wait_until(lambda: len(read_all(settings, toy.output_topic)) == 100, 60, "every output")
    assert processor.snapshotter.busy and snapshots(settings, toy) == []
    gate.touch()
    wait_until(lambda: snapshots(settings, toy), 30, "the snapshots")
    stop_thread(processor, thread)
    assert assert_exactly_once(settings, toy) == 100
    inputs = defaultdict(list)
    for record in read_all(settings, toy.input_topic):
        inputs[record.partition()].append(int(record.value()))
    earlier = 0
    for snap in snapshots(settings, toy):
        count, total = json.loads(zlib.decompress(snap["state"]))
        partition, offset = snap["partition"], snap["offset"]
        assert (count, total) == (offset, sum(inputs[partition][:offset])), snap
        earlier += offset < len(inputs[partition])
    assert earlier  # taken as of a commit that later ones went past


def test_kill_9_mid_batch_then_restart_yields_every_output_once(settings, toy):
    """Each kill lands once the processor has committed part of its input and while input it
    has not read is waiting (it is paused, then given more; see tests/integration/backlog.py)."""
    rng = random.Random(20261121)
    total, size = 6000, 600
    values = [rng.randint(-50, 100) for _ in range(total)]
    chunks = iter([values[i : i + size] for i in range(0, total, size)])
    env = settings_env(settings, TOY_BATCH="100", TOY_SNAPSHOT_RECORDS="250")
    group = settings.topic_prefix + toy.name

    def start():
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.toy_processor"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        backlog.wait_ready(settings.run_dir, toy.name, proc)
        return proc

    def progress() -> int:
        return sum(backlog.committed(settings.kafka, group, toy.input_topic).values())

    produce_inputs(settings, toy, next(chunks))
    kills = []
    proc = start()
    try:
        for _ in range(4):
            kills.append(
                backlog.kill_with_unread_input(
                    settings.kafka,
                    proc,
                    progress=progress,
                    inputs=lambda: backlog.partitions_of(settings.kafka, [toy.input_topic]),
                    feed=lambda _: produce_inputs(settings, toy, next(chunks)),
                )
            )
            proc = start()  # its input is waiting: the next kill finds it working
        for chunk in chunks:
            produce_inputs(settings, toy, chunk)
        wait_until(lambda: len(read_all(settings, toy.output_topic)) >= total, 120, "all outputs")
    finally:
        proc.terminate()
        proc.wait(30)
    assert len(kills) == 4
    print("kills:", kills)
    assert all(k.progress > 0 and k.unread > 0 for k in kills), kills
    assert assert_exactly_once(settings, toy) == total
