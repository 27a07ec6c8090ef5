"""The ledger service on the real broker: kill -9 mid-run, then every decision exactly once.

The input is a seeded session of the offline exchange (commands and the toy matcher's settlements
for four partitions, plus a few undecodable records), produced to ledger.commands while the ledger
process is killed with SIGKILL several times. Afterwards account.events and match.commands must be
exactly what the pure core produces offline over the input log as it stands on the broker: per key
the same records in the same order, none missing, none twice, order ids gap-free per partition.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Producer

from services.common.codec import Codec
from services.ledger.service import LedgerCore
from services.ledger.simulation import Exchange, random_session
from tests.support import read_all, settings_env, wait_until

pytestmark = pytest.mark.integration
PARTITIONS = 4
RECORDS = 12_000
CODEC = Codec()


def session_log() -> list[tuple[int, str, bytes]]:
    """(partition, key, value) in the order the gateway and the matcher would append them."""
    ex = Exchange(PARTITIONS, keep_decisions=False)
    random_session(ex, random.Random(20261121), RECORDS, accounts=60)
    log = [(p, rec["envelope"]["key"], CODEC.encode(name, rec)) for p, name, rec in ex.log]
    for i in (100, len(log) // 2, len(log) - 5):  # a few records nobody can read
        log.insert(i, (i % PARTITIONS, "junk", b"not an avro record"))
    return log


def feed(settings, log, pause_every: int = 50, pause: float = 0.1) -> None:
    """About 25 s of traffic, so the kills land while commands flow."""
    producer = Producer({"bootstrap.servers": settings.kafka, "enable.idempotence": True})
    topic = settings.topic("ledger.commands")
    for i, (partition, key, value) in enumerate(log):
        producer.produce(topic, value, key, partition=partition)
        if i % pause_every == 0:
            producer.flush()
            time.sleep(pause)
    producer.flush()


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


def stream(topic: str, key: str, value: bytes) -> tuple[str, str, int]:
    """The unit of order: a key's records from one ledger partition, in that partition's order.

    account.events keys live on one ledger partition each; match.commands keys (symbols) get
    records from every ledger partition, interleaved as the batches happened to commit, so they
    are compared per source partition (known from the order id, n x P + p + 1).
    """
    if not topic.endswith("match.commands"):
        return topic, key, -1
    return topic, key, (CODEC.decode(value)[1]["order_id"] - 1) % PARTITIONS


def offline(settings) -> dict[tuple[str, str, int], list[bytes]]:
    """What the pure core decides over the input as the broker holds it, per stream."""
    core = LedgerCore(settings)
    partitions = {p: core.fresh(p, PARTITIONS) for p in range(PARTITIONS)}
    expected = defaultdict(list)
    for record in read_all(settings, core.input_topic):
        for out in partitions[record.partition()].apply(record.value()):
            expected[stream(out.topic, out.key, out.value)].append(out.value)
    return expected


def produced(settings) -> dict[tuple[str, str, int], list[bytes]]:
    actual = defaultdict(list)
    for role in ("account.events", "match.commands"):
        for record in read_all(settings, settings.topic(role)):
            key = stream(record.topic(), record.key().decode(), record.value())
            actual[key].append(record.value())
    return actual


def test_kill_9_mid_run_leaves_every_decision_exactly_once(settings, tmp_path):
    rng = random.Random(7)
    log = session_log()
    feeder = threading.Thread(target=feed, args=(settings, log))
    feeder.start()
    kills_while_feeding = 0
    with open(tmp_path / "ledger.log", "wb") as out:
        proc = start_ledger(settings, out)
        try:
            for _ in range(4):
                ready = settings.run_dir / "ledger-0.ready"
                wait_until(ready.exists, 60, "the ledger to go live")
                time.sleep(rng.uniform(0.5, 2.5))
                proc.kill()  # SIGKILL: mid-batch, no goodbye
                proc.wait()
                kills_while_feeding += feeder.is_alive()
                ready.unlink()
                proc = start_ledger(settings, out)
            feeder.join()
            expected = offline(settings)
            total = sum(len(v) for v in expected.values())
            wait_until(
                lambda: sum(len(v) for v in produced(settings).values()) >= total,
                90,
                f"{total} decisions",
            )
        finally:
            proc.terminate()
            proc.wait(30)
            feeder.join()
    assert kills_while_feeding >= 3
    actual = produced(settings)
    assert actual.keys() == expected.keys()
    for key, values in expected.items():
        assert actual[key] == values, key
    assert_no_decision_twice(actual)
    assert_order_ids_gap_free(actual, settings)


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
