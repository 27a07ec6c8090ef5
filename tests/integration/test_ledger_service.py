"""The ledger service on the real broker: kill -9 mid-run, then every decision exactly once.

The input is a seeded session of the in-memory exchange (testkit: commands and the real matcher's
settlements for four partitions, plus a few undecodable records), produced to ledger.commands in
chunks while the ledger process is killed with SIGKILL several times, each time with commands it
has not read.
Afterwards account.events and match.commands must be exactly what the pure core produces offline
over the input log as it stands on the broker (services.ledger.verify: per key and source
partition the same records in the same order), none missing, none twice, order ids gap-free per
partition.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from services.common.codec import Codec
from services.common.reader import end_offsets
from services.ledger.service import LedgerCore
from services.ledger.verify import logged, verify
from testkit.pipeline import LEDGER_COMMANDS, Pipeline
from testkit.simulation import random_session
from tests.integration import backlog
from tests.support import settings_env, wait_until

pytestmark = pytest.mark.integration
PARTITIONS = 4
RECORDS = 12_000
CODEC = Codec()


def session_log() -> list[tuple[int, str, bytes]]:
    """(partition, key, value) in the order the gateway and the matcher would append them."""
    pipeline = Pipeline(PARTITIONS, project=False)
    random_session(pipeline, random.Random(20261121), RECORDS, accounts=60)
    log = [(p, record.key, record.value) for p, _, record in pipeline.log.in_order(LEDGER_COMMANDS)]
    for i in (100, len(log) // 2, len(log) - 5):  # a few records nobody can read
        log.insert(i, (i % PARTITIONS, "junk", b"not an avro record"))
    return log


def append(settings, records) -> None:
    """Append (partition, key, value) records to ledger.commands, in order."""
    producer = Producer({"bootstrap.servers": settings.kafka, "enable.idempotence": True})
    topic = settings.topic("ledger.commands")
    for partition, key, value in records:
        producer.produce(topic, value, key, partition=partition)
    assert producer.flush(30) == 0


def start_ledger(settings, log_file):
    env = settings_env(
        settings, MARKETLOG_LEDGER_BATCH_RECORDS="300", MARKETLOG_LEDGER_SNAPSHOT_RECORDS="700"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "services.ledger", "serve"],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def caught_up(settings) -> bool:
    """Whether the ledger's committed offsets reached the end of every input partition."""
    topic = settings.topic("ledger.commands")
    group = Consumer({"bootstrap.servers": settings.kafka, "group.id": settings.topic("ledger")})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = group.committed(parts, 10)
        ends = end_offsets(settings, [topic], committed=False)
        return all(c.offset == ends[(topic, c.partition)] for c in committed)
    finally:
        group.close()


def outputs(settings) -> dict[tuple, list[bytes]]:
    return logged(LedgerCore(settings), settings, PARTITIONS)


def test_kill_9_mid_run_leaves_every_decision_exactly_once(settings, tmp_path):
    """Each kill lands once the ledger has committed part of its input and while commands it
    has not read are waiting (it is paused, then given more; see tests/integration/backlog.py)."""
    log, size = session_log(), 1000
    chunks = iter([log[i : i + size] for i in range(0, len(log), size)])
    group = settings.topic("ledger")  # the ledger's consumer group

    def progress() -> int:
        return sum(
            backlog.committed(settings.kafka, group, settings.topic("ledger.commands")).values()
        )

    append(settings, next(chunks))
    kills = []
    with open(tmp_path / "ledger.log", "wb") as out:

        def start():
            proc = start_ledger(settings, out)
            backlog.wait_ready(settings.run_dir, "ledger", proc)
            return proc

        proc = start()
        try:
            for _ in range(4):
                kills.append(
                    backlog.kill_with_unread_input(
                        settings.kafka,
                        proc,
                        progress=progress,
                        inputs=lambda: backlog.partitions_of(
                            settings.kafka, [settings.topic("ledger.commands")]
                        ),
                        feed=lambda _: append(settings, next(chunks)),
                    )
                )
                proc = start()  # its input is waiting: the next kill finds it working
            for chunk in chunks:
                append(settings, chunk)
            wait_until(lambda: caught_up(settings), 90, "the ledger to catch up")
        finally:
            proc.terminate()
            proc.wait(30)
    assert len(kills) == 4
    print("kills:", kills)
    assert all(k.progress > 0 and k.unread > 0 for k in kills), kills
    report = verify(settings)  # re-runs the pure core over the input log on the broker
    assert (report.differences, report.behind) == ([], [])
    assert report.inputs == len(log) and report.outputs > report.inputs
    actual = outputs(settings)
    assert_no_decision_twice(actual)
    assert_order_ids_gap_free(actual, settings)
    assert_verify_sees_a_forged_decision(settings, actual)


def assert_no_decision_twice(actual) -> None:
    values = [v for records in actual.values() for v in records]
    assert len(values) == len(set(values))


def assert_order_ids_gap_free(actual, settings) -> None:
    ids = defaultdict(list)
    topic = settings.topic("account.events")
    for (t, _, _), values in actual.items():
        if t != topic:
            continue
        for value in values:
            name, record = CODEC.decode(value)
            if name == "marketlog.account.OrderAccepted" and not record["duplicate"]:
                ids[(record["order_id"] - 1) % PARTITIONS].append(record["order_id"])
    assert sorted(ids) == list(range(PARTITIONS))
    for p, found in ids.items():
        assert sorted(found) == list(range(p + 1, p + 1 + PARTITIONS * len(found), PARTITIONS))


def assert_verify_sees_a_forged_decision(settings, actual) -> None:
    (topic, key, _), values = next(iter(sorted(actual.items())))
    producer = Producer({"bootstrap.servers": settings.kafka})
    producer.produce(topic, values[0], key)  # a decision nobody made: a replayed duplicate
    producer.flush()
    report = verify(settings)
    assert len(report.differences) == 1 and key in report.differences[0]
