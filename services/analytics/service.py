"""The analytics shell: a faust-streaming app around services/analytics/core.py.

It consumes ``market.events`` (prefixed, raw bytes, decoded with the repo's Avro codec) with
``processing_guarantee="exactly_once"``: for each input partition faust keeps one transactional
producer and, every ``broker_commit_interval``, commits in that producer's transaction the input
offsets it has acked. Each trade's candle updates (to ``analytics.candles``) and the state records
that make its fold durable (to the compacted ``analytics.state``) are sent on that producer, to
the input's partition number, in the same transaction (docs/analytics.md, "Exactly once").

Two faust details decide it, both found by the kill test (tests/integration/test_analytics.py):

- Faust's tables write their changelogs with its plain producer, outside the transaction (and
  ``Topic.send`` to a topic the app does not consume does too): a kill -9 then restores a state
  that counted trades whose updates were aborted, or misses ones that were committed. So there
  are no faust tables here: the state is ours (``core.Symbols``), written to ``analytics.state``
  in the transaction and read back (read_committed) on the first event after an assignment.
- Faust commits on a timer, between any two awaits: a commit landing between two sends of one
  trade would keep half of its updates and replay the trade. So a trade's records are sent while
  holding the transaction's lock, which faust's commit takes too (``_send_atomically``: the one
  place that reaches into faust's aiokafka producer, checked on first use).

And two changes to faust's consumer, made in ``build``: ``pace_fetches`` (a fetch per 0.1 s
instead of one per engine commit) and ``deliver_only`` (the records the fold skips and the
transaction markers are acked where they are fetched, not carried through faust's stream
machinery and its gap tracking, which let the committed offset fall ever further behind).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import faust
import faust.transport.consumer
import faust.transport.drivers.aiokafka
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient

from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import admin_config, security_config
from services.common.reader import read_to_end

from . import core
from .records import TRADE, encode_update, trade_of

log = logging.getLogger(__name__)

APP = "analytics"
SOURCE, SINK, STATE = "market.events", "analytics.candles", "analytics.state"
COMMIT_SECONDS = 0.25  # how often a transaction commits: most of the trade -> candle latency
# The sends wait this long to share a produce request: unseen anyway until the commit. At 750
# orders/s, 0 -> 50 ms took the app's produce requests from 65 to 13 a second (docs/analytics.md).
# The broker holds a fetch until this much is committed (never, at these rates) or this long:
# one fetch per 0.1 s under load instead of one per engine commit (pace_fetches).
FETCH_MIN_BYTES, FETCH_WAIT_SECONDS = 1_000_000, 0.1
LINGER_SECONDS = float(os.environ.get("MARKETLOG_ANALYTICS_LINGER_MS", "50")) / 1000


def partitions_of(settings: Settings, topic: str, timeout: float = 60.0) -> int:
    """The partition count of a provisioned topic (infra/topics.toml): the tables need it."""
    admin, deadline = AdminClient(admin_config(settings)), time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} missing: run `python -m infra topics`")
        time.sleep(0.5)


def build(settings: Settings) -> faust.App:
    codec = Codec()
    pace_fetches()
    deliver_only(lambda value: folds(codec, value))
    partitions = partitions_of(settings, settings.topic(SOURCE))
    for topic in (SINK, STATE):
        if partitions_of(settings, settings.topic(topic)) != partitions:
            raise RuntimeError(f"{topic} must have as many partitions as {SOURCE} (topics.toml)")
    datadir = settings.run_dir / f"{APP}-{settings.instance}"  # faust's own files (none kept)
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.topic_prefix + APP,
        broker=";".join(f"kafka://{hp}" for hp in settings.kafka.split(",")),
        processing_guarantee="exactly_once",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=partitions,
        broker_commit_interval=COMMIT_SECONDS,
        producer_linger=LINGER_SECONDS,
        # a killed instance's partitions move after 10 s (as services/common/kafka.py), not 60
        broker_session_timeout=10.0,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",  # every key and value here is bytes we encode ourselves
        value_serializer="raw",
        broker_credentials=credentials(settings),
    )
    source_name = settings.topic(SOURCE)
    source = app.topic(source_name, key_type=bytes, value_type=bytes)
    sink, state_topic = settings.topic(SINK), settings.topic(STATE)
    states: dict[int, core.Symbols] = {}  # by input partition, loaded on its first event

    def transactional_id(partition: int) -> str:
        return f"{app.conf.id}-{app.assignor.group_for_topic(source_name)}-{partition}"

    @app.agent(source)
    async def fold(stream):
        async for event in stream.events():
            try:
                await fold_one(event)
            except Exception:
                # faust would ack the event and restart the agent: a trade skipped for good. Stop
                # like a kill -9 instead: the open transaction is aborted, nothing of it counts,
                # and the restarted app meets the same record again (and stops again: loudly).
                log.exception(
                    "cannot fold %s[%d]@%d: stopping",
                    event.message.topic,
                    event.message.partition,
                    event.message.offset,
                )
                logging.shutdown()
                os._exit(70)

    async def fold_one(event) -> None:
        """One market.events record: a Trade's updates and state, in one transaction."""
        # only what ``folds`` keeps comes here (deliver_only): a Trade, or an unknown header,
        # which raises here
        _, record = codec.decode(event.value)
        partition = event.message.partition
        tid = transactional_id(partition)
        symbols = states.get(partition)
        if symbols is None:
            symbols = states[partition] = await restore(tid, partition)
        trade = trade_of(record)
        updates, state = symbols.fold(trade)
        if not updates:
            return  # seen before: nothing changes
        key = trade.symbol.encode()
        out = [(sink, key, encode_update(codec, u)) for u in updates]
        out += [(state_topic, k.encode(), v) for k, v in state]
        await _send_atomically(app.producer, tid, partition, out)

    async def restore(tid: str, partition: int) -> core.Symbols:
        """The partition's committed state. Faust has started this partition's transactional
        producer before handing out its events, which fenced (aborted) any transaction a dead
        owner left open, so the committed records are all the state there is."""
        if tid not in _transaction_producers(app.producer):
            raise RuntimeError(f"no transactional producer {tid} for partition {partition}")
        loop = asyncio.get_running_loop()
        symbols = await loop.run_in_executor(None, load_state, settings, state_topic, partition)
        log.info("partition %d: state of %d symbols restored", partition, len(symbols.heads))
        return symbols

    @app.on_partitions_revoked.connect
    async def revoked(sender, revoked, **kwargs) -> None:
        # faust stops a revoked partition's producer (its open transaction is aborted when the
        # next owner starts) and consumes again from the committed offset: so must the state
        for tp in revoked:
            if tp.topic == source_name:
                states.pop(tp.partition, None)

    @app.on_rebalance_complete.connect
    async def ready(sender, **kwargs) -> None:
        path: Path = settings.mark_ready(APP)
        log.info("analytics live (%s)", path)

    return app


def folds(codec: Codec, value: bytes | None) -> bool:
    """Whether the fold reads this record: a Trade, or a header no version knows (decoding it
    then stops the app, loudly). Most of ``market.events`` is neither: read to its header only."""
    return codec.name_of(value) in (TRADE, None)


def pace_fetches() -> None:
    """Let the broker hold the app's fetches for FETCH_WAIT_SECONDS instead of answering each
    engine commit (about 40 a second under load) with its own fetch.

    Faust builds its aiokafka consumer with ``fetch_min_bytes=1`` and offers no setting for it, so
    every commit's few records came as one fetch, handed from faust's consumer thread to its loop
    and back. With FETCH_MIN_BYTES never reached at these rates, a fetch returns after
    FETCH_WAIT_SECONDS with all that was committed meanwhile (at once, given that much backlog).
    A candle can wait that much longer; it waits up to COMMIT_SECONDS for the commit anyway.
    Measured at 500 XML orders/s (docs/analytics.md): the app's CPU 532-619 -> 271-324 µs/order.
    Set on the consumer before it starts (aiokafka's ``AIOKafkaConsumer`` keeps both as
    attributes it hands its fetcher at start); idempotent."""
    thread = faust.transport.drivers.aiokafka.AIOKafkaConsumerThread
    original = thread._create_worker_consumer
    if getattr(original, "paced", False):
        return

    def create(self, transport):
        consumer = original(self, transport)
        for name in ("_fetch_min_bytes", "_fetch_max_wait_ms"):
            if not hasattr(consumer, name):
                raise RuntimeError(f"aiokafka's consumer has no {name}: check pace_fetches")
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = int(FETCH_WAIT_SECONDS * 1000)
        return consumer

    create.paced = True  # type: ignore[attr-defined]
    thread._create_worker_consumer = create


def deliver_only(wanted: Callable[[bytes | None], bool]) -> None:
    """Hand faust's streams only the records ``wanted`` keeps; ack the others, and the offsets of
    the transaction markers, where they are fetched, as if a stream had acked them at once.

    Faust carries every record it fetches to the agent the same way: in its fetch loop a
    ``wait_first`` of four tasks per record, the conductor's lock, an event, the stream's queue,
    its sensors and the ack. More than half of ``market.events`` is not trades (OrderRested,
    BookChecksum: 56 % at 500 XML orders/s), and the fold reads those no further than their
    header. And each marker (one per engine transaction) left a gap that the fetch loop fills
    through an interval tree rebuilt per gap, and that faust-streaming 0.15.3 stores with the next
    record's offset included: the duplicate ended the consecutive run of acked offsets at every
    marker, so a commit (every 250 ms) passed one marker only and the committed offset fell ever
    further behind (1,482 against 15,546 read after 30 s at 500 XML orders/s; the same bug as
    faust-streaming#606 and robinhood/faust#625). So the consumer's ``getmany`` now acks both
    itself and notes them read: the fetch loop then sees no gap and only wanted records, the
    acked offsets stay consecutive, and every commit moves the committed offset past all that
    was read. Fails loudly if faust's ``getmany`` or ``ack`` is not the one this relies on; a
    later call wraps faust's own ``getmany`` again, never the wrapper."""
    cls = faust.transport.consumer.Consumer
    original = getattr(cls.getmany, "unfiltered", cls.getmany)
    if "yield tp, to_message(tp, record)" not in inspect.getsource(original) or (
        "acked_for_tp.append(offset)" not in inspect.getsource(cls.ack)
    ):
        raise RuntimeError("faust's Consumer.getmany or ack changed: check deliver_only")

    async def getmany(self, timeout: float):
        read_offset = self._read_offset
        async for tp, message in original(self, timeout):
            offset, last = message.offset, read_offset[tp]
            if last is not None and offset < last:  # read before a seek back: the loop drops it
                if wanted(message.value):
                    yield tp, message
                continue
            if last is not None and offset - last > 1:
                _ack_offsets(self, tp, range(last + 1, offset))  # markers: nothing to deliver
                read_offset[tp] = offset - 1
            if wanted(message.value):
                yield tp, message
            else:
                self.ack(message)
                read_offset[tp] = offset

    getmany.unfiltered = original  # type: ignore[attr-defined]
    cls.getmany = getmany


def _ack_offsets(consumer, tp, offsets: range) -> None:
    """Offsets no record is delivered at, acked as ``Consumer.ack`` acks a record's: none below
    the committed offset (faust keeps Kafka's, the next offset to read), none twice."""
    committed = consumer._committed_offset[tp]
    acked, index = consumer._acked[tp], consumer._acked_index[tp]
    for offset in offsets:
        if (committed is None or offset >= committed) and offset not in index:
            index.add(offset)
            acked.append(offset)


def credentials(settings: Settings) -> faust.SASLCredentials | None:
    """The principal's SASL/SCRAM credentials in cluster mode (MARKETLOG_KAFKA_SECURITY, the same
    file the confluent-kafka clients read), None on the plaintext single broker."""
    found = security_config(settings)
    if not found:
        return None
    mechanism = found.get("sasl.mechanism") or found.get("sasl.mechanisms")
    return faust.SASLCredentials(
        username=found["sasl.username"], password=found["sasl.password"], mechanism=mechanism
    )


def load_state(settings: Settings, topic: str, partition: int) -> core.Symbols:
    symbols = core.Symbols()
    for message in read_to_end(settings, {(topic, partition): OFFSET_BEGINNING}):
        symbols.restore(message.key().decode(), message.value())
    return symbols


def _transaction_producers(producer) -> dict:
    """Faust's aiokafka producers by transactional id (faust-streaming's aiokafka driver)."""
    try:
        return producer._transaction_producers
    except AttributeError:
        raise RuntimeError("this faust version keeps no _transaction_producers") from None


async def _send_atomically(producer, tid: str, partition: int, out: list) -> None:
    """Send one trade's records in the partition's transaction with no commit in between: faust's
    own ``send(transactional_id=...)`` takes the transaction's lock per record, and its commit
    takes it too, so a commit could fall between two records of one trade."""
    async with producer._trn_locks[tid]:
        transaction = _transaction_producers(producer)[tid]
        for topic, key, value in out:
            await transaction.send(topic, value, key=key, partition=partition)


def serve(settings: Settings | None = None) -> None:
    app = build(settings or Settings())
    worker = faust.Worker(app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
