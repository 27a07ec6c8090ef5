"""The Kafka ceiling on this machine: what the broker and client carry with the pipeline's settings.

1. produce -> consume: a transactional producer committing every `batch` records (the processor
   loop's batch size) and a read_committed consumer in another process; records of an order
   command's size. Throughput is records/s from the first send to the last receipt; latency is
   send -> receipt per record.
2. one exactly-once hop: the same records relayed by services.common.processor.Processor with an
   identity core (consume -> produce -> send offsets -> commit), the loop every processor runs,
   through its public ``run(records=n)``.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from hdrh.histogram import HdrHistogram

from bench import throughput
from infra.stack import create_topics
from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import consumer_config, producer_config
from services.common.processor import Output, Processor

RECORDS = 200_000
QUICK_RECORDS = 20_000
BATCH = 2000


def order_sized_value() -> bytes:
    return Codec().encode(
        "marketlog.ledger.PlaceOrder",
        {
            "envelope": {
                "command_id": "0" * 32,
                "key": "1000",
                "ts": time.time_ns() // 1000,
                "reply_to": "gw-0-abcdef",
            },
            "client_order_id": "",
            "symbol": "SYM",
            "side": "BUY",
            "price": 1_245_000,
            "qty": 10_000,
            "tif": "GTC",
            "expire_ts": None,
            "post_only": False,
            "stp": "NONE",
            "budget": None,
        },
    )


def percentiles(hist: HdrHistogram) -> dict:
    return {f"p{p}": hist.get_value_at_percentile(p) / 1000 for p in (50, 99, 99.9)} | {
        "max": hist.get_max_value() / 1000
    }


def _consume(settings: Settings, topic: str, count: int, out: mp.Queue) -> None:
    consumer = Consumer(consumer_config(settings, None))
    partitions = consumer.list_topics(topic, 10).topics[topic].partitions
    if not partitions:  # the producer would wait 300 s on a reader that reads nothing
        raise RuntimeError(f"{topic} has no partitions in the reader's metadata")
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    hist, seen, last = HdrHistogram(1, 60_000_000, 3), 0, 0.0
    while seen < count:
        for record in consumer.consume(10_000, 1.0):
            if record.error() is None:
                now = time.time_ns()
                hist.record_value(max(1, (now - int(record.key())) // 1000))
                seen += 1
                last = now
    consumer.close()
    out.put((last, percentiles(hist)))


def _result(results: mp.Queue, reader, timeout: float = 300.0):
    """The reader's figures; a reader that died says so at once, not after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            if not reader.is_alive():  # its figures may have landed since the get gave up
                try:
                    return results.get(timeout=1.0)
                except queue.Empty:
                    raise RuntimeError(f"reader ended ({reader.exitcode}), no figures") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"the reader sent no figures in {timeout:.0f} s") from None


def produce_consume(settings: Settings, value: bytes, records: int) -> dict:
    topic = settings.topic("ceiling.raw")
    create_topics(settings, settings.partitions, topic)
    results: mp.Queue = mp.get_context("spawn").Queue()
    reader = mp.get_context("spawn").Process(
        target=_consume, args=(settings, topic, records, results)
    )
    reader.start()
    time.sleep(2.0)  # let the consumer assign before the clock starts
    producer = Producer(producer_config(settings, "ceiling"))
    producer.init_transactions()
    started = time.time_ns()
    for first in range(0, records, BATCH):
        producer.begin_transaction()
        for i in range(first, min(first + BATCH, records)):
            producer.produce(topic, value, str(time.time_ns()), partition=i % settings.partitions)
        producer.commit_transaction()
    last, latency = _result(results, reader)
    reader.join(30)
    return {
        "records": records,
        "record_bytes": len(value),
        "txn_batch": BATCH,
        "records_per_s": round(records / ((last - started) / 1e9)),
        "latency_ms": latency,
    }


class _Relay:
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def apply(self, value: bytes) -> list[Output]:
        return [Output(self.topic, "k", value)]

    def snapshot(self) -> bytes:
        return b""


class _RelayCore:
    name = "ceiling-relay"

    def __init__(self, settings: Settings) -> None:
        self.input_topic = settings.topic("ceiling.in")
        self.output_topic = settings.topic("ceiling.out")
        self.snapshot_topic = settings.topic("ceiling.snapshots")

    def fresh(self, partition: int, partitions: int) -> _Relay:
        return _Relay(self.output_topic)

    def restore(self, partition: int, partitions: int, state: bytes) -> _Relay:
        return _Relay(self.output_topic)


def eos_hop(settings: Settings, value: bytes, records: int) -> dict:
    core = _RelayCore(settings)
    create_topics(settings, settings.partitions, core.input_topic, core.output_topic)
    create_topics(settings, settings.partitions, core.snapshot_topic, compacted=True)
    throughput.produce(
        settings,
        core.input_topic,
        ((str(i), value, i % settings.partitions) for i in range(records)),
    )
    # from the first record to the last commit: the group join is not the hop's cost
    seconds = Processor(core, settings, batch_records=BATCH).run(records=records)
    return {"records": records, "records_per_s": round(records / seconds), "txn_batch": BATCH}


def run(env) -> dict:
    value = order_sized_value()
    records, runs = (QUICK_RECORDS, 1) if env.quick else (RECORDS, 3)
    raw = [produce_consume(env.settings(), value, records) for _ in range(runs)]
    hop = [eos_hop(env.settings(), value, records) for _ in range(runs)]
    return {
        "produce_consume": {
            "runs": raw,
            "median_records_per_s": statistics.median(r["records_per_s"] for r in raw),
        },
        "eos_hop": {
            "runs": hop,
            "median_records_per_s": statistics.median(r["records_per_s"] for r in hop),
        },
    }


def summary(figures: dict) -> str:
    raw, hop = figures["produce_consume"], figures["eos_hop"]
    return (
        f"- transactional produce -> read_committed consume: {raw['median_records_per_s']:,} "
        f"records/s (median of {len(raw['runs'])})\n"
        f"- one exactly-once hop (the processor loop, identity core): "
        f"{hop['median_records_per_s']:,} records/s"
    )
